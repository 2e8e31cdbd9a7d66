"""The command-line configurations of benchmarks/gpu_micro.py's conv timings (parsed on the CPU;
the timings themselves need a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conv_ops_micro import parse_conv_config, parse_conv_fwd_config  # noqa: E402

from zoo_plugins.triton_ssd import conv  # noqa: E402


def test_backward_config_defaults_and_warps() -> None:
    assert parse_conv_config("16,64,16") == ("two_pass", 16, 64, 16, 4)
    assert parse_conv_config("staged:32,128,8,8") == ("staged", 32, 128, 8, 8)
    assert all(parse_conv_config(f"{k}:8,16,2")[0] in conv.BACKWARD_KERNELS for k in conv.BACKWARD_KERNELS)


def test_forward_config_defaults_and_warps() -> None:
    assert parse_conv_fwd_config("64,128") == (64, 128, 4)
    assert parse_conv_fwd_config("32,256,8") == (32, 256, 8)


@pytest.mark.parametrize("text,parse", [("16,64", parse_conv_config), ("1,2,3,4", parse_conv_fwd_config)])
def test_bad_config_names_the_form(text, parse) -> None:
    with pytest.raises(SystemExit, match="expected"):
        parse(text)


def test_conv_ops_alone_time_every_backward_and_check_dx(monkeypatch) -> None:
    """The op-level conv timing end to end on a small shape in the Triton interpreter: one row
    per backward configuration, each with its error against fp64 (the timing itself is only
    meaningful on a GPU)."""
    pytest.importorskip("triton")
    import torch
    from conv_ops_micro import conv_ops_micro

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    lines: list[str] = []
    tiles = [parse_conv_config("16,64,2"), parse_conv_config("fused:16,64,2")]
    before = (conv.backward_kernels, conv._TILES_PRE)
    conv_ops_micro(
        lines,
        lambda: None,
        torch.Generator().manual_seed(0),
        1,
        tiles,
        seq_len=48,
        splits=(16, 8, 8),
        lead=16,
        width=56,
        reps=1,
    )
    rows = [line for line in lines if line.startswith("| backward")]
    assert len(rows) == 2 and not any("FAIL" in row for row in rows)
    assert all(float(row.split("|")[2]) < 1e-2 for row in rows)  # dx against fp64
    assert (conv.backward_kernels, conv._TILES_PRE) == before  # the knobs are put back
