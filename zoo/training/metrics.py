"""Metrics to JSONL, and a dependency-free progress bar."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO


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
    """``step/total [bar] key=value ...`` on one line of a terminal, every ``every`` steps otherwise."""

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None, width: int = 24) -> None:
        self.total, self.enabled, self.width = total, enabled, width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 1 if self.tty else max(1, total // 20)
        self.start = time.perf_counter()

    def update(self, step: int, **values: Any) -> None:
        if not self.enabled or (not self.tty and step % self.every and step != self.total):
            return
        done = int(self.width * step / max(1, self.total))
        bar = "#" * done + "." * (self.width - done)
        elapsed = time.perf_counter() - self.start
        fields = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        line = f"{step}/{self.total} [{bar}] {elapsed:.0f}s {fields}"
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
