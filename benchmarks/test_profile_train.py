"""How benchmarks/profile_train.py files a kernel under a category (kernel names as the torch
profiler reported them for compiled 400m training steps on an H100), its ``--diff`` of two
records, and that profiling refuses to run without a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_train import category, diff, main  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

KERNELS = [
    ("nvjet_sm90_tst_192x192_64x3_2x1_v_bz_coopB_NNN", "matmul"),
    ("_seg_scan_fwd", "ssd"),
    ("_chunk_bwd_dbc", "ssd"),
    ("_seg_dstate_store", "ssd"),
    ("_conv_bwd_pre", "conv"),
    (
        "triton_poi_fused__to_copy__unsafe_view_add_causal_conv1d_bwd_clone_permute_select_slice_backward_view_24",
        "conv",
    ),
    # inductor's casts are not the conv, though "convert" starts like it
    ("triton_poi_fused__to_copy_convert_element_type_3", "fused elementwise (inductor)"),
    ("triton_poi_fused__unsafe_view_mul_silu_split_11", "fused elementwise (inductor)"),
    (
        "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x128_1x4x1_cga1x1x1_kernel0_0",
        "attention",
    ),
    # the logits path's softmax: the loss, not "other"
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float>", "cross-entropy"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxBackward<4, float, float, float>", "cross-entropy"),
    (
        "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata>",
        "optimizer",
    ),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>", "copy / fill"),
    ("void cudnn::fusion::compute_dot_do_o<true>", "other"),
]


@pytest.mark.parametrize(("name", "expected"), KERNELS, ids=[k[0][:40] for k in KERNELS])
def test_category(name: str, expected: str) -> None:
    assert category(name) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_needs_cuda(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--models", "transmamba", "--out", str(tmp_path / "p.json")]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def _record(kernel_ms: float, cats: dict[str, float], kernels: list[tuple[str, float]], model: str = "m") -> dict:
    row = {
        "model": model,
        "seq_len": 2048,
        "step_wall_ms": kernel_ms + 10,
        "kernel_ms": kernel_ms,
        "peak_memory_gib": 1.0,
        "categories_ms": cats,
        "top_kernels_ms": [(name, ms, category(name)) for name, ms in kernels],
    }
    return {"rows": [row]}


def test_diff_pairs_rows_categories_and_kernels() -> None:
    before = _record(30.0, {"ssd": 20.0, "conv": 10.0}, [("_seg_scan_fwd", 12.0), ("_conv_fwd", 4.0)])
    after = _record(27.5, {"ssd": 20.5, "matmul": 7.0}, [("_seg_scan_fwd", 11.0), ("nvjet_x", 7.0)])
    after["rows"].append(_record(1.0, {}, [], model="only-after")["rows"][0])
    text = diff(before, after)
    assert "kernels 30.00 -> 27.50 ms per step (-2.50)" in text
    assert "| ssd | 20.00 | 20.50 | +0.50 |" in text
    assert "| conv | 10.00 | - |  |" in text  # a category one record lacks
    assert "| matmul | - | 7.00 |  |" in text
    assert "| `_seg_scan_fwd` | 12.000 | 11.000 | -1.00 |" in text
    assert "| `_conv_fwd` | 4.000 | - |  |" in text  # outside the after record's top list
    assert "only-after" not in text  # a row only one record has is left out


def test_diff_without_common_rows() -> None:
    assert (
        diff(_record(1.0, {}, [], model="a"), _record(1.0, {}, [], model="b")) == "no (model, T) row is in both records"
    )


def test_diff_cli_on_the_committed_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    before = RESULTS / "profile-train-h100-400m-2k.json"
    after = RESULTS / "profile-train-h100-400m-2k-split.json"
    assert main(["--diff", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "### transmamba T=2048" in out and "### transformer T=2048" in out
    assert "| conv | 22.59 | 16.75 | -5.84 |" in out  # in_proj split's conv glue


def test_diff_cli_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["--diff", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a profile_train record" in err
    assert main(["--diff", str(tmp_path / "missing.json"), str(bad)]) == 2
    assert "missing.json" in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text('{"rows": [{"model": "m", "seq_len": 1}]}')
    assert main(["--diff", str(partial), str(partial)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "kernel_ms" in err
