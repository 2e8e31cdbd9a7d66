"""Registers, spill stack and shared memory of the Triton SSD, causal-conv and gated-norm kernels, without a GPU.

    python benchmarks/kernel_resources.py [--arch 90] [--dtype bf16]

Compiles each kernel of ``zoo_plugins/triton_ssd`` ahead of time for an NVIDIA target with
the launch configuration ``plan.py`` plans (H=48 P=64 N=128 shapes: BP=64, BN=128; chunk 64 and
128; the warps and stages of ``plan.walk``) and reads the cubin's resource
usage with ``cuobjdump -res-usage`` (both ship with Triton's NVIDIA backend). A kernel at 255
registers with a non-zero STACK spills; that is the first thing to check after a kernel
change, before spending device time. The numbers belong to the Triton that is imported (the
script prints its version); to see the GPU machine's, put that version first on the path:

    pip install --no-deps --target DIR triton==3.6.0      (DIR: any empty folder)
    PYTHONPATH=DIR python benchmarks/kernel_resources.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, compile  # noqa: E402

from zoo_plugins.triton_ssd import kernels, kernels_bwd, plan  # noqa: E402
from zoo_plugins.triton_ssd.tuning import DEFAULT  # noqa: E402

# pointers that hold x.dtype tensors; every other pointer is fp32
LOW_PRECISION = {"x_ptr", "B_ptr", "C_ptr", "y_ptr", "states_ptr", "dstates_ptr"}
LOW_PRECISION |= {"dy_ptr", "dx_ptr", "dB_ptr", "dC_ptr"}
LOW_PRECISION |= {"out0_ptr", "out1_ptr", "out2_ptr", "g0_ptr", "g1_ptr", "g2_ptr"}  # the Triton conv
LOW_PRECISION |= {"z_ptr", "out_ptr", "dout_ptr", "dz_ptr"}  # the Triton norm (its weight is fp32)
FLOAT_ARGS = {"eps"}  # scalar arguments passed as Python floats


def resources(fn, constexprs: dict, *, warps: int, stages: int, arch: int, dtype: str) -> dict[str, int]:
    signature = {}
    for param in fn.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
        elif param.name in FLOAT_ARGS:
            signature[param.name] = "fp32"
        elif param.name.endswith("_ptr"):
            signature[param.name] = f"*{dtype}" if param.name in LOW_PRECISION else "*fp32"
        else:
            signature[param.name] = "i32"
    constants = {name: value for name, value in constexprs.items() if signature.get(name) == "constexpr"}
    missing = [name for name, kind in signature.items() if kind == "constexpr" and name not in constants]
    if missing:
        raise ValueError(f"{fn.__name__}: no value for constexpr {missing}")
    compiled = compile(
        ASTSource(fn=fn, signature=signature, constexprs=constants),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": warps, "num_stages": stages},
    )
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        text = subprocess.run([str(tool), "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text))
    return {key: int(value) for key, value in found.items()} | {"triton_shared": compiled.metadata.shared}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x10 (90 = H100/H200)")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--chunk-warps", type=int, default=None, help="warps of the chunk kernels (default: plan's)")
    args = parser.parse_args()
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    torch_dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[args.dtype]
    import torch

    stages = plan.stages(getattr(torch, torch_dtype), DEFAULT)
    precision = "ieee" if args.dtype == "fp32" else "tf32"
    print(f"triton {triton.__version__}, sm_{args.arch}, {args.dtype}, stages {stages} (walking kernels)")
    print(f"{'kernel':20s} {'chunk':>5s} {'warps':>5s} {'REG':>4s} {'STACK':>6s} {'shared':>7s}")
    chunks = (64,) if args.dtype == "fp32" else (64, 128)
    for chunk in chunks:
        warps = plan.walk(
            torch.empty(1, chunk, 48, 64, dtype=getattr(torch, torch_dtype)), 8, 128, chunk, 1, DEFAULT
        ).launch["num_warps"]
        chunk_warps = args.chunk_warps or plan.chunk_launch(getattr(torch, torch_dtype), chunk, DEFAULT)["num_warps"]
        common = dict(Q=chunk, BP=64, BN=128, PREC=precision, DOT_F32=False)
        flags = dict(HAS_LAST=True, SAVE=True, HAS_DY=True, HAS_FIRST=True)
        rows = [
            (kernels._seg_state_fwd, common, warps),
            (kernels._seg_scan_fwd, common | flags, warps),
            (kernels_bwd._seg_dstate_rev, common | flags, warps),
            (kernels_bwd._seg_dstate_store, common | flags, warps),
            (kernels_bwd._chunk_bwd_dbc, common | flags | {"BN": common["BN"] // 2}, chunk_warps),
            (kernels_bwd._chunk_bwd_dx, common | flags, chunk_warps),
        ]
        for fn, constexprs, num_warps in rows:
            usage = resources(fn, constexprs, warps=num_warps, stages=stages, arch=args.arch, dtype=args.dtype)
            print(
                f"{fn.__name__:20s} {chunk:5d} {num_warps:5d} {usage.get('REG', 0):4d} "
                f"{usage.get('STACK', 0):6d} {usage['triton_shared']:7d}",
                flush=True,
            )
    # the fused causal conv (conv: triton), at the tiles it launches with; "chunk" = tokens per tile
    from zoo_plugins.triton_ssd import conv, conv_kernels

    flags = dict(W=4, HAS_BIAS=True, ACT=True, HAS_G0=True, HAS_G1=True, HAS_G2=True, BC=conv._BC)
    kinds = conv.backward_kernels
    pre = {"BT": conv._BT_PRE, "BC": conv._BC_PRE, "TILES": conv._TILES_PRE, "WP": 4}
    pre |= {"FUSED": kinds == "fused", "STAGED": kinds == "staged"}  # the backward conv.py launches
    for fn, tile, extra in (
        (conv_kernels._conv_fwd, conv._BT, {}),
        (conv_kernels._conv_bwd_pre, conv._BT_PRE, pre),
        (conv_kernels._conv_bwd_dx, conv._BT_BWD, {}),
    ):
        usage = resources(fn, flags | {"BT": tile} | extra, warps=4, stages=3, arch=args.arch, dtype=args.dtype)
        print(
            f"{fn.__name__:20s} {tile:5d} {4:5d} {usage.get('REG', 0):4d} {usage.get('STACK', 0):6d} "
            f"{usage['triton_shared']:7d}",
            flush=True,
        )
    # the gated RMSNorm (norm: triton) at the layouts it launches for groups of 384 (the 400m
    # shape), 4096 and the largest it takes; "chunk" = channels per group
    from zoo_plugins.triton_ssd import norm, norm_kernels

    for group_size in (384, 4096, norm.MAX_GROUP_SIZE):
        for fn, tile, per_warp in (
            (norm_kernels._norm_fwd, norm._TILE, norm._PER_WARP),
            (norm_kernels._norm_bwd, norm._TILE_BWD, norm._PER_WARP_BWD),
        ):
            block, rows, num_warps = norm._layout(group_size, tile, per_warp)
            constexprs = {"HAS_Z": True, "ROWS": rows, "BLOCK": block}
            usage = resources(fn, constexprs, warps=num_warps, stages=3, arch=args.arch, dtype=args.dtype)
            print(
                f"{fn.__name__:20s} {group_size:5d} {num_warps:5d} {usage.get('REG', 0):4d} "
                f"{usage.get('STACK', 0):6d} {usage['triton_shared']:7d}",
                flush=True,
            )


if __name__ == "__main__":
    main()
