"""Kill -9 a training run mid-way, resume it, and finish with the uninterrupted run's losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zoo.checkpoint import MANIFEST, list_checkpoints, open_checkpoint
from zoo.errors import CheckpointError
from zoo.training import read_jsonl

DRIVER = Path(__file__).parent / "kill_driver.py"
STEPS = 30


def _run(out: Path, *extra: str, pause: float = 0.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DRIVER), str(out), str(STEPS), str(pause), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl")]


def _watch_for_partial_checkpoints(run_dir: Path, stop: threading.Event, seen: list[str]) -> None:
    """Every checkpoint directory that is ever visible must already hold its manifest."""
    while not stop.is_set():
        for path in list_checkpoints(run_dir):
            try:
                names = set(os.listdir(path))
            except FileNotFoundError:  # pruned between listing and reading: fine
                continue
            if MANIFEST not in names:
                seen.append(f"{path.name}: {sorted(names)}")
        time.sleep(0.002)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path) -> None:
    straight = _run(tmp_path / "straight")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(killed_dir), str(STEPS), "0.03"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stop, partial = threading.Event(), []
    watcher = threading.Thread(target=_watch_for_partial_checkpoints, args=(killed_dir, stop, partial))
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = killed_dir / "metrics.jsonl"
            if metrics.exists() and len(read_jsonl(metrics)) >= STEPS // 2 + 1:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop.set()
        watcher.join()
    assert proc.returncode == -signal.SIGKILL
    assert partial == [], f"half-written checkpoints were visible: {partial}"
    checkpoints = list_checkpoints(killed_dir)
    # keep_last=2, plus one when the kill lands between publishing a checkpoint and pruning the
    # oldest (publishing first is what keeps two verified checkpoints at every moment)
    assert checkpoints and len(checkpoints) <= 3
    last_step = open_checkpoint(checkpoints[-1]).step
    assert 0 < last_step < STEPS
    for path in checkpoints:  # every visible checkpoint verifies
        try:
            open_checkpoint(path)
        except CheckpointError as exc:
            raise AssertionError(f"visible checkpoint does not verify: {exc}") from exc

    resumed = _run(killed_dir, "--resume")
    assert resumed.stdout.strip() == straight.stdout.strip()  # final loss, repr: every bit
    assert _losses(killed_dir) == _losses(tmp_path / "straight")
    assert not any((killed_dir / ".staging").iterdir())
    assert len(list_checkpoints(killed_dir)) <= 2  # the resumed run pruned back to keep_last
