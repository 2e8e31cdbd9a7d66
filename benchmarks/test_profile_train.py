"""How benchmarks/profile_train.py files a kernel under a category (kernel names as the torch
profiler reported them for compiled 400m training steps on an H100), and that the script
refuses to run without a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_train import category, main  # noqa: E402

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
