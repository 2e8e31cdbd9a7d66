"""The Triton SSD plugin's launch planning, host side only (no kernel runs): batch slices
that keep offsets within int32, segments that fill the device, fp32 unpipelined, and the
tuning knobs checked and passed to the launches.
"""

from __future__ import annotations

import pytest
import torch

from zoo_plugins.triton_ssd import TritonSSM

available, why = TritonSSM.is_available()
pytestmark = pytest.mark.skipif(not available, reason=f"ssm 'triton' unavailable: {why}")


def test_batch_slices_keep_offsets_within_int32(monkeypatch) -> None:
    from zoo_plugins.triton_ssd import plan

    x = torch.empty(8, 65536, 48, 64)
    # B=8, T=64K, chunk 64 with saved states: 3.2e9 elements > 2**31 - 1, so slices of 5 rows
    assert plan.batch_slices(x, 8, 128, 64, True) == [(0, 5), (5, 8)]
    assert plan.batch_slices(x, 8, 128, 64, False) == [(0, 8)]  # the forward alone fits
    with pytest.raises(ValueError, match="chunk_size=16.*larger chunk_size"):
        plan.batch_slices(torch.empty(1, 2**20, 48, 64), 8, 128, 16, True)
    monkeypatch.setattr(plan, "INT32_LIMIT", 300)  # a row: 16 padded tokens x 2 heads x 8 = 256
    assert plan.batch_slices(torch.empty(3, 2, 2, 8), 1, 4, 16, False) == [(0, 1), (1, 2), (2, 3)]
    assert plan.batch_slices(torch.empty(0, 2, 2, 8), 1, 4, 16, False) == [(0, 0)]


def test_segments_fill_the_device_only_when_rows_do_not() -> None:
    from zoo_plugins.triton_ssd import plan
    from zoo_plugins.triton_ssd.tuning import DEFAULT

    cpu = torch.device("cpu")  # the interpreter's stand-in device: 64 processors, 128 programs
    assert plan.segments(100, 64, cpu, DEFAULT) == (100, 1)  # rows fill it: one segment, no extra pass
    assert plan.segments(100, 2, cpu, DEFAULT) == (2, 50)  # two rows: 64 segments wanted, of 2 chunks
    assert plan.segments(3, 2, cpu, DEFAULT) == (1, 3)  # never more segments than chunks
    assert plan.segments(0, 2, cpu, DEFAULT) == (1, 1)
    assert plan.segments(4, 0, cpu, DEFAULT) == (4, 1)  # an empty batch: nothing to split


def test_fp32_runs_unpipelined_with_gpu_sized_chunks() -> None:
    # fp32 with 3 pipeline stages gave wrong outputs on the H200 (docs/benchmarks.md, "Correctness
    # limits found on the GPU"); fp32 chunk-128 tiles do not fit an SM's shared memory.
    from zoo_plugins.triton_ssd import plan
    from zoo_plugins.triton_ssd.tuning import DEFAULT, Tuning

    assert plan.stages(torch.float32, DEFAULT) == 1 and plan.stages(torch.bfloat16, DEFAULT) == 3
    two = Tuning(stages=2)  # a 16-bit knob: fp32 stays unpipelined
    assert plan.stages(torch.float32, two) == 1 and plan.stages(torch.bfloat16, two) == 2
    assert plan.effective_chunk(128, torch.empty(1)) == 128  # the cap is for CUDA tensors only
    assert plan.effective_chunk(128, torch.empty(1, dtype=torch.bfloat16)) == 128
    if torch.cuda.is_available():
        assert plan.effective_chunk(128, torch.empty(1, device="cuda")) == 64
        assert plan.effective_chunk(128, torch.empty(1, device="cuda", dtype=torch.bfloat16)) == 128


def test_tuning_knobs_are_checked_and_reach_the_launches(monkeypatch) -> None:
    from zoo_plugins.triton_ssd import plan
    from zoo_plugins.triton_ssd.tuning import DEFAULT, Tuning, parse_knobs

    assert parse_knobs("chunk_warps=4, stages=2,maxnreg=none") == {"chunk_warps": 4, "stages": 2, "maxnreg": None}
    assert Tuning.parse("chunk_warps=4, stages=2") == Tuning(chunk_warps=4, stages=2)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        Tuning.parse("chunk_warps")
    with pytest.raises(KeyError, match="chunk_wraps"):
        Tuning.of(chunk_wraps=4)
    with pytest.raises(ValueError, match="stages=0"):
        Tuning(stages=0)
    with pytest.raises(ValueError, match="chunk_wraps"):  # the backend's param names the knob
        TritonSSM({"tuning": {"chunk_wraps": 4}})
    assert plan.chunk_launch(torch.bfloat16, 64, DEFAULT) == {"num_warps": 4, "num_stages": 3}
    assert plan.chunk_launch(torch.bfloat16, 128, DEFAULT) == {"num_warps": 8, "num_stages": 3}
    assert plan.chunk_launch(torch.float32, 64, DEFAULT) == {"num_warps": 8, "num_stages": 1}
    chunk_knobs = Tuning(chunk_warps=4, chunk_stages=2, chunk_maxnreg=128)
    assert chunk_knobs.overrides() == {"chunk_warps": 4, "chunk_stages": 2, "chunk_maxnreg": 128}
    assert Tuning.from_args(chunk_knobs.to_args()) == chunk_knobs and Tuning.from_args(None) == DEFAULT
    assert plan.chunk_launch(torch.float32, 64, chunk_knobs)["num_stages"] == 1  # fp32 stays unpipelined
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # a real launch gets the register cap
    assert plan.chunk_launch(torch.bfloat16, 128, chunk_knobs) == {"num_warps": 4, "num_stages": 2, "maxnreg": 128}
    walk_knobs = chunk_knobs.replace(warps=8, stages=2, maxnreg=168)
    x = torch.empty(1, 100, 2, 8, dtype=torch.bfloat16)
    assert plan.walk(x, 1, 16, 16, 7, walk_knobs).launch == {"num_warps": 8, "num_stages": 2, "maxnreg": 168}
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the interpreter has no registers to cap
    assert plan.chunk_launch(torch.bfloat16, 128, chunk_knobs) == {"num_warps": 4, "num_stages": 2}
    assert plan.walk(x, 1, 16, 16, 7, walk_knobs).launch == {"num_warps": 8, "num_stages": 2}
    assert plan.programs_per_sm(Tuning(programs_per_sm=2)) == 2
    assert plan.programs_per_sm(DEFAULT) == 4  # None is the default (4 per SM), not 1
    with pytest.raises(ValueError, match="power of two"):
        Tuning(chunk_warps=3)
    with pytest.raises(ValueError, match="stages='two'"):
        Tuning.parse("stages=two")
