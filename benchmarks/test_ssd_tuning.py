"""The launch-configuration sweep of benchmarks/gpu_ssd.py (``ssd_tuning.sweep``) on the CPU:
its bookkeeping (each configuration checked and timed, the ratio to the default, the choice
of the best) with the SSD, the inputs and the timer replaced by small CPU stand-ins (the
timings themselves need a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import ssd_tuning  # noqa: E402

from zoo_plugins.triton_ssd.tuning import Tuning  # noqa: E402

# a stand-in time per configuration: chunk_warps=8 is the fastest, stages=2 the slowest
SPEED = {(): 1.0, (("chunk_warps", 8),): 0.8, (("stages", 2),): 1.3}


def _stand_ins(monkeypatch) -> None:
    import zoo_plugins.triton_ssd as triton_ssd

    def inputs(batch, seq_len, *, grad, seed=0):
        gen = torch.Generator().manual_seed(seed)
        names = ("x", "dt", "A", "B", "C", "D")
        return {name: torch.randn(2, 3, generator=gen).requires_grad_(grad) for name in names}

    def ssd(x, dt, A, B, C, D=None, *, chunk_size, tuning):
        return x * dt.exp() + A * B - C * D

    def time_backend(call, batch, seq_len):
        factor = SPEED[tuple(sorted(call.keywords["tuning"].overrides().items()))]
        return 0.1 * factor * seq_len / 1024, 0.4 * factor * seq_len / 1024

    monkeypatch.setattr(ssd_tuning, "inputs", inputs)
    monkeypatch.setattr(ssd_tuning, "time_backend", time_backend)
    monkeypatch.setattr(triton_ssd, "ssd", ssd)


def test_sweep_times_every_configuration_and_picks_the_fastest(monkeypatch) -> None:
    _stand_ins(monkeypatch)
    report: list[str] = []
    best = ssd_tuning.sweep(report, [{}, {"stages": 2}, {"chunk_warps": 8}], Tuning(), shapes=[(2, 1024), (1, 4096)])
    assert best == {"chunk_warps": 8}
    rows = {row.split(" | ")[0]: row for row in report if row.startswith("| ") and "geomean" not in row}
    assert "FAIL" not in "".join(rows.values())
    assert rows["| (defaults)"].endswith("| 1.000 |")
    assert rows["| stages=2"].endswith("| 1.300 |") and rows["| chunk_warps=8"].endswith("| 0.800 |")
    header = next(row for row in report if "geomean" in row)
    assert "B2 T1024 fwd" in header and "B1 T4096 fwd+bwd" in header  # the shapes asked for


def test_sweep_keeps_the_default_when_nothing_beats_it(monkeypatch) -> None:
    _stand_ins(monkeypatch)
    report: list[str] = []
    assert ssd_tuning.sweep(report, [{}, {"stages": 2}], Tuning(), shapes=[(1, 1024)]) is None
