"""Processes of ``benchmarks/fsdp_scaling.py``: launch with a time limit, stop a process group, name the machine."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
ZOO = [sys.executable, "-m", "zoo"]


def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group (torchrun and its workers), SIGKILL what is left after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def shown(command: list[str]) -> str:
    return shlex.join(["python" if part == sys.executable else part for part in command])


def launch(command: list[str], log: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``command`` in its own process group with a wall-clock limit; output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timed_out = False
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env(), cwd=ROOT, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                _stop_group(proc)
    outcome: dict[str, Any] = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - start, 1)}
    if timed_out:
        outcome["result"] = f"timeout ({timeout_s:g} s)"
    elif proc.returncode != 0:
        outcome["result"] = f"failed (rc {proc.returncode})"
    if "result" in outcome:
        outcome["log_tail"] = log.read_text(errors="replace")[-2000:]
        print(f"  {outcome['result']}; log: {log}\n{outcome['log_tail'][-800:]}", file=sys.stderr)
    return outcome


def machine(device: str) -> tuple[str, str]:
    """(device name, tag): read through nvidia-smi so this process never opens a CUDA context."""
    if device == "cpu":
        return "cpu", "cpu"
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        names = []
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return "cuda", "cuda"
    return names[0], f"{names[0].split()[-1].lower()}x{len(names)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
