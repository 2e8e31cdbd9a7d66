"""Small GPU timings behind choices of the mixers, one run:

1. grouped attention of the TransMamba prefix, B=1, G=8 groups x 128 (q/k), H=48 value heads
   x 64, bf16, causal: SDPA with ``grouping`` 'expand' vs 'fold_slices', eager and compiled,
   forward and forward+backward, at T = 2048 (the P = 2048 prefix) and 8192;
2. rotary embedding of q and k as the transformer mixer applies it (B=1, T=8192, 16 heads x
   96), compiled: the cos/sin table as an op of its own (``zoo.ops.rope``) vs cos/sin
   computed inside the rotation (the alternative, kept here for the comparison);
3. the causal conv + SiLU (``conv: triton`` vs inductor's) and the gated RMSNorm
   (``norm: triton`` vs inductor's) at the 400m shape.

    python benchmarks/gpu_micro.py --out micro.md
    python benchmarks/gpu_micro.py --norm-only --out norm.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from conv_ops_micro import (  # noqa: E402
    conv_backward_config,
    conv_ops_micro,
    parse_conv_config,
    parse_conv_fwd_config,
)


def bench(fn, grads=None) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def fwd_and_fwd_bwd(fn, inputs: list[torch.Tensor]) -> tuple[float, float]:
    with torch.no_grad():
        fwd = bench(lambda: fn(*inputs))
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    cotangent = torch.randn_like(out[0] if isinstance(out, tuple) else out)

    def step():
        result = fn(*leaves)
        result = result[0] if isinstance(result, tuple) else result
        result.backward(cotangent)

    return fwd, bench(step, grads=leaves)


def rotary_inline(x: torch.Tensor, positions: torch.Tensor, theta: float = 1e4) -> torch.Tensor:
    """The rotation as it was before the table op (cos/sin as plain ops)."""
    from zoo.ops.rope import rotary_angles

    angles = rotary_angles(positions, x.shape[-1], theta)[None, :, None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    first, second = x.float().chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1).to(x.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_micro.md")
    parser.add_argument(
        "--conv-only",
        default=None,
        help="only the conv, under ';'-separated backward configurations [KERNELS:]BT,BC,TILES: the "
        "backward's kernels (two_pass, fused or staged; default two_pass) and the tile of its first (or only) "
        "kernel (the first entry is what the Triton conv has now), e.g. '16,64,16;fused:16,64,16;fused:8,64,32'; "
        "an optional fourth number is the warps per program (default 4)",
    )
    parser.add_argument(
        "--conv-fwd",
        default="",
        help="with --conv-only: ';'-separated forward tiles BT,BC[,WARPS] to time as well, e.g. '64,128;32,256,8'",
    )
    parser.add_argument(
        "--conv-batch",
        type=int,
        default=0,
        help="with --conv-only: instead of the B=1 timings, the conv's forward and backward ops alone (CUDA events, no "
        "autograd) at this batch, T=8192, under each backward configuration, with each kernel's time",
    )
    parser.add_argument("--norm-only", action="store_true", help="only the gated RMSNorm")
    args = parser.parse_args()
    import triton

    if args.norm_only:
        lines = [
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; GPU: "
            f"{torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}",
            f"- command: `python benchmarks/gpu_micro.py {' '.join(sys.argv[1:])}`",
        ]
        norm_micro(lines, lambda: Path(args.out).write_text("\n".join(lines) + "\n"), torch.Generator(device="cuda"))
        print("\n".join(lines))
        return
    if args.conv_only is not None:
        lines = [
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; GPU: "
            f"{torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}",
            f"- command: `python benchmarks/gpu_micro.py {' '.join(sys.argv[1:])}`",
        ]
        gen = torch.Generator(device="cuda").manual_seed(0)
        write = lambda: Path(args.out).write_text("\n".join(lines) + "\n")  # noqa: E731
        tiles = [parse_conv_config(c) for c in args.conv_only.split(";") if c]
        if args.conv_batch:
            conv_ops_micro(lines, write, gen, args.conv_batch, tiles)
        else:
            fwd_tiles = [parse_conv_fwd_config(c) for c in args.conv_fwd.split(";") if c]
            conv_micro(lines, write, gen, tiles=tiles, fwd_tiles=fwd_tiles)
        print("\n".join(lines))
        return

    from zoo.ops.attention.reference import grouped_attention
    from zoo.ops.attention.sdpa import sdpa_grouped_attention
    from zoo.ops.rope import rotary
    from zoo.testing import rel_err

    lines = [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; GPU: {torch.cuda.get_device_name()}",
        f"- torch {torch.__version__}, triton {triton.__version__}",
        f"- command: `python benchmarks/gpu_micro.py {' '.join(sys.argv[1:])}`",
        "",
        "### Grouped prefix attention, B=1, G=8 x 128, H=48 x 64, bf16, causal (ms, median)",
        "",
        "| grouping | T | max rel err vs fp32 reference | eager fwd | eager fwd+bwd | compiled fwd "
        "| compiled fwd+bwd |",
        "|---|---|---|---|---|---|---|",
    ]

    def write() -> None:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(lines[-1], flush=True)

    gen = torch.Generator(device="cuda").manual_seed(0)
    for T in (2048, 8192):
        q = torch.randn(1, T, 8, 128, device="cuda", generator=gen).bfloat16()
        k = torch.randn(1, T, 8, 128, device="cuda", generator=gen).bfloat16()
        v = torch.randn(1, T, 48, 64, device="cuda", generator=gen).bfloat16()
        scale = 128**-0.5
        expected = grouped_attention(q[:, :512].float(), k[:, :512].float(), v[:, :512].float(), scale=scale)
        for grouping in ("expand", "fold_slices"):
            fn = partial(sdpa_grouped_attention, scale=scale, grouping=grouping)
            err = rel_err(fn(q[:, :512], k[:, :512], v[:, :512]).float(), expected)
            eager = fwd_and_fwd_bwd(fn, [q, k, v])
            compiled = fwd_and_fwd_bwd(torch.compile(fn, fullgraph=True), [q, k, v])
            cells = " | ".join(f"{t:.3f}" for t in (*eager, *compiled))
            lines.append(f"| {grouping} | {T} | {err:.1e} | {cells} |")
            write()

    lines += [
        "",
        "### Rotary of q and k, B=1, T=8192, 16 heads x 96, bf16, compiled (ms, median)",
        "",
        "| cos/sin | max rel err vs fp64 | fwd | fwd+bwd |",
        "|---|---|---|---|",
    ]
    positions = torch.arange(8192, device="cuda")
    q = torch.randn(1, 8192, 16, 96, device="cuda", generator=gen).bfloat16()
    k = torch.randn(1, 8192, 16, 96, device="cuda", generator=gen).bfloat16()
    expected = rotary(q.double(), positions)
    for name, rot in (("table op (zoo.ops.rope now)", rotary), ("inline (before)", rotary_inline)):
        fn = torch.compile(lambda a, b, rot=rot: (rot(a, positions), rot(b, positions)), fullgraph=True)
        err = rel_err(fn(q, k)[0].double(), expected)
        fwd, fb = fwd_and_fwd_bwd(lambda a, b, fn=fn: torch.cat(fn(a, b), dim=2), [q, k])
        lines.append(f"| {name} | {err:.1e} | {fwd:.3f} | {fb:.3f} |")
        write()
    conv_micro(lines, write, gen)
    norm_micro(lines, write, gen)
    print("\n".join(lines))


def norm_micro(lines: list[str], write, gen: torch.Generator) -> None:
    """The SSD mixers' gated RMSNorm at the 400m shape in a T=8K step (4 x 2048 rows, d_inner
    3072 in 8 groups, y bf16, z a slice of the 8240-wide in_proj output, fp32 weight as under
    autocast): the fused Triton op (``norm: triton``) vs the reference compiled by inductor
    (``norm: torch``). Errors are the largest of out, dy, dz, dweight against fp64."""
    from zoo.ops.norm import gated_rms_norm as reference
    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd.norm import gated_rms_norm

    gen.manual_seed(0)
    lines += [
        "",
        "### Gated RMSNorm, 4 x 2048 rows, d_inner 3072, 8 groups, bf16, z from in_proj (ms, median)",
        "",
        "| norm | max rel err vs fp64 (out, dy, dz, dw) | fwd | fwd+bwd |",
        "|---|---|---|---|",
    ]
    y = torch.randn(4, 2048, 3072, device="cuda", generator=gen).bfloat16()
    wide = torch.randn(4, 2048, 8240, device="cuda", generator=gen).bfloat16()
    weight = 1 + 0.1 * torch.randn(3072, device="cuda", generator=gen)
    cot = torch.randn(4, 2048, 3072, device="cuda", generator=gen).bfloat16()
    ref = [t.double().requires_grad_(True) for t in (y, wide[..., :3072], weight)]
    out_ref = reference(*ref, n_groups=8, eps=1e-5)
    expected = [out_ref, *torch.autograd.grad(out_ref, ref, cot.double())]

    def triton_norm(y, z, weight):
        return gated_rms_norm(y, z, weight, n_groups=8, eps=1e-5)

    def torch_norm(y, z, weight):
        return reference(y, z, weight, n_groups=8, eps=1e-5)

    for name, fn in (("triton (norm: triton)", triton_norm), ("torch, compiled", torch.compile(torch_norm))):
        leaves = [t.detach().clone().requires_grad_(True) for t in (y, wide, weight)]
        out = fn(leaves[0], leaves[1][..., :3072], leaves[2])
        grads = torch.autograd.grad(out, leaves, cot)
        got = [out, grads[0], grads[1][..., :3072], grads[2]]
        err = max(rel_err(g.double(), e) for g, e in zip(got, expected, strict=True))

        def run(y, w, weight, fn=fn):
            return fn(y, w[..., :3072], weight)

        fwd, fb = fwd_and_fwd_bwd(run, [y, wide, weight])
        lines.append(f"| {name} | {err:.1e} | {fwd:.3f} | {fb:.3f} |")
        write()


def conv_micro(
    lines: list[str],
    write,
    gen: torch.Generator,
    tiles: list[tuple[str, int, int, int, int]] = (),
    fwd_tiles: list[tuple[int, int, int]] = (),
) -> None:
    """The Mamba2 mixer's causal conv + SiLU at the 400m shape (B=1, T=8192, 5120 channels
    sliced from the 8240-wide in_proj output, split into x / B / C): the fused Triton op vs
    the shifted multiply-adds compiled by inductor (the 'torch' conv backend). ``tiles``: the
    Triton op again under each (kernels, BT, BC, TILES, warps) of its backward, gradients
    checked, and under each (BT, BC, warps) of its forward kernel, outputs checked."""
    from zoo.layers.conv import CausalConv1d
    from zoo.ops.conv import conv_reference
    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd import conv as conv_ops
    from zoo_plugins.triton_ssd.conv import causal_conv1d

    lines += [
        "",
        "### Causal conv + SiLU, B=1, T=8192, 5120 of 8240 channels, width 4, bf16 (ms, median)",
        "",
        "| conv | max rel err vs fp64 | fwd | fwd+bwd |",
        "|---|---|---|---|",
    ]
    wide = torch.randn(1, 8192, 8240, device="cuda", generator=gen).bfloat16()
    conv = CausalConv1d(5120, 4).cuda().bfloat16()
    splits = [3072, 1024, 1024]

    def torch_conv(xbc, weight, bias):
        y = torch.nn.functional.silu(conv(xbc)[0])
        return [t.contiguous() for t in torch.split(y, splits, dim=-1)]

    def triton_conv(xbc, weight, bias):
        return causal_conv1d(xbc, weight[:, 0], bias, split_sizes=splits)

    expected = conv_reference(wide[:, :, 3072:8192].double(), conv.weight[:, 0].double(), conv.bias.double(), True)
    for name, fn in (("triton (conv: triton)", triton_conv), ("torch, compiled", torch.compile(torch_conv))):
        err = rel_err(torch.cat(fn(wide[:, :, 3072:8192], conv.weight, conv.bias), -1).double(), expected)

        def run(w, fn=fn):
            return torch.cat(fn(w[:, :, 3072:8192], conv.weight, conv.bias), -1)

        fwd, fb = fwd_and_fwd_bwd(run, [wide])
        lines.append(f"| {name} | {err:.1e} | {fwd:.3f} | {fb:.3f} |")
        write()
    if fwd_tiles:
        lines += [
            "",
            "#### forward tiles (BT tokens x BC channels, warps), triton op",
            "",
            "| BT, BC, warps | max rel err vs fp64 | fwd |",
            "|---|---|---|",
        ]
        saved_fwd = (conv_ops._BT, conv_ops._BC, conv_ops._FWD_WARPS)
        for tile in fwd_tiles:
            conv_ops._BT, conv_ops._BC, conv_ops._FWD_WARPS = tile
            try:
                err = rel_err(
                    torch.cat(triton_conv(wide[:, :, 3072:8192], conv.weight, conv.bias), -1).double(), expected
                )
                ms = bench(lambda: triton_conv(wide[:, :, 3072:8192], conv.weight, conv.bias))
                lines.append(f"| {tile} | {err:.1e} | {ms:.3f} |")
            except Exception as exc:  # reported; the other tiles still run
                lines.append(f"| {tile} | FAIL {type(exc).__name__}: {str(exc)[:80]} | |")
            write()
        conv_ops._BT, conv_ops._BC, conv_ops._FWD_WARPS = saved_fwd
    if not tiles:
        return
    lines += [
        "",
        "#### backward kernels and their tiles (BT tokens x BC channels, TILES per program, warps), triton op",
        "",
        "| kernels, BT, BC, TILES, warps | max rel err of dx, dw, db vs fp64 | fwd+bwd |",
        "|---|---|---|",
    ]
    # x stays a strided slice of the in_proj-wide tensor, as in the mixers
    leaves = [t.detach().clone().requires_grad_(True) for t in (wide, conv.weight[:, 0], conv.bias)]
    ref = [t.detach().double().requires_grad_(True) for t in (leaves[0][:, :, 3072:8192], *leaves[1:])]
    cot = torch.randn(1, 8192, 5120, device="cuda", generator=gen)
    ref_grads = torch.autograd.grad((conv_reference(*ref, True) * cot.double()).sum(), ref)

    def step():  # the op reads its backward configuration at call time
        out = torch.cat(causal_conv1d(leaves[0][:, :, 3072:8192], *leaves[1:], split_sizes=splits), -1)
        return torch.autograd.grad(out, leaves, cot.to(out.dtype))

    for tile in tiles:
        try:
            with conv_backward_config(tile):
                grads = step()
                grads = (grads[0][:, :, 3072:8192], *grads[1:])
                err = max(rel_err(g.double(), r) for g, r in zip(grads, ref_grads, strict=True))
                lines.append(f"| {tile} | {err:.1e} | {bench(step):.3f} |")
        except Exception as exc:  # reported; the other tiles still run
            lines.append(f"| {tile} | FAIL {type(exc).__name__}: {str(exc)[:80]} | |")
        write()


if __name__ == "__main__":
    main()
