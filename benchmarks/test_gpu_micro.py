"""The command-line configurations of benchmarks/gpu_micro.py's conv timings (parsed on the CPU;
the timings themselves need a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_micro import parse_conv_config, parse_conv_fwd_config  # noqa: E402

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
