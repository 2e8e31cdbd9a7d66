"""The Triton causal conv's timing knobs and its op-level timing, shared by
``gpu_micro.py --conv-only`` and its tests: backward and forward configurations parsed from
the command line, the backward configuration set for a block, and the conv's custom ops timed
alone at the training step's shape (``conv_ops_micro``)."""

from __future__ import annotations

import contextlib
import time

import torch


def parse_conv_config(text: str) -> tuple[str, int, int, int, int]:
    """``[KERNELS:]BT,BC,TILES[,WARPS]`` -> (kernels, BT, BC, TILES, WARPS); kernels default
    ``two_pass``, warps 4."""
    kernels, _, tile = text.rpartition(":")
    values = [int(v) for v in tile.split(",")]
    if len(values) not in (3, 4):
        raise SystemExit(f"conv backward config {text!r}: expected [KERNELS:]BT,BC,TILES[,WARPS]")
    bt, bc, tiles, warps = (*values, 4) if len(values) == 3 else values
    return kernels or "two_pass", bt, bc, tiles, warps


def parse_conv_fwd_config(text: str) -> tuple[int, int, int]:
    """``BT,BC[,WARPS]`` -> the forward kernel's (BT, BC, WARPS); warps default 4."""
    values = [int(v) for v in text.split(",")]
    if len(values) not in (2, 3):
        raise SystemExit(f"conv forward config {text!r}: expected BT,BC[,WARPS]")
    return (*values, 4) if len(values) == 2 else tuple(values)


@contextlib.contextmanager
def conv_backward_config(tile: tuple[str, int, int, int, int]):
    """The Triton conv's backward kernels and d_pre tile (kernels, BT, BC, TILES, warps: the
    module attributes the op reads at call time) set to ``tile`` inside the block, put back
    after it."""
    from zoo_plugins.triton_ssd import conv as conv_ops

    knobs = ("backward_kernels", "_BT_PRE", "_BC_PRE", "_TILES_PRE", "_PRE_WARPS")
    saved = [getattr(conv_ops, k) for k in knobs]
    for knob, value in zip(knobs, tile, strict=True):
        setattr(conv_ops, knob, value)
    try:
        yield
    finally:
        for knob, value in zip(knobs, saved, strict=True):
            setattr(conv_ops, knob, value)


def _event_ms(fn, reps: int = 30) -> float:
    """Mean ms per call of ``fn`` after 3 untimed calls: between CUDA events on a GPU, by the
    wall clock on a CPU (the tests' interpreter run)."""
    for _ in range(3):
        fn()
    if not torch.cuda.is_available():
        began = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - began) * 1e3 / reps
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def _kernel_ms(fn, reps: int = 10) -> str:
    """The three longest CUDA kernels' ms per call of ``fn`` (torch profiler); '-' without a GPU."""
    if not torch.cuda.is_available():
        return "-"
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    times = [
        (event.key, event.self_device_time_total / 1e3 / reps)
        for event in prof.key_averages()
        if event.device_type == torch.autograd.DeviceType.CUDA
    ]
    return ", ".join(f"`{name[:28]}` {ms:.3f}" for name, ms in sorted(times, key=lambda kv: -kv[1])[:3])


def conv_ops_micro(
    lines: list[str],
    write,
    gen: torch.Generator,
    batch: int,
    tiles,
    *,
    seq_len: int = 8192,
    splits: tuple[int, ...] = (3072, 1024, 1024),
    lead: int = 3072,
    width: int = 8240,
    reps: int = 30,
) -> None:
    """The conv's custom ops alone at the training step's shape (``batch`` x ``seq_len`` tokens;
    the conv's ``sum(splits)`` channels start at ``lead`` of the ``width``-wide in_proj output,
    split into x / B / C): no autograd glue, no concatenation, so the time is the kernels'.
    Bandwidth is against the fewest bytes each direction must move (forward: read x, write the
    output; backward: read x and the output gradient, write dx). On a CPU (tests) it runs the
    Triton interpreter and times by the wall clock."""
    from zoo.ops.conv import conv_reference
    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd import conv as conv_ops

    device = gen.device
    channels = sum(splits)
    wide = torch.randn(batch, seq_len, width, device=device, generator=gen).bfloat16()
    x = wide[:, :, lead : lead + channels]
    weight = (0.5 * torch.randn(channels, 4, device=device, generator=gen)).bfloat16()
    bias = (0.1 * torch.randn(channels, device=device, generator=gen)).bfloat16()
    grads = [torch.randn(batch, seq_len, size, device=device, generator=gen).bfloat16() for size in splits]
    tensor_bytes = batch * seq_len * channels * 2
    copy_ms = _event_ms(lambda: x.clone(), reps)
    lines += [
        "",
        f"### Conv ops alone, B={batch}, T={seq_len}, {channels} of {width} channels, bf16 "
        f"(ms, mean of {reps} after 3)",
        "",
        f"A copy of x (strided read, contiguous write) takes {copy_ms:.3f} ms "
        f"({2 * tensor_bytes / copy_ms / 1e6:.0f} GB/s).",
        "",
        "| op, kernels, BT, BC, TILES, warps | max rel err of dx (row 0) vs fp64 | ms | GB/s of the fewest bytes "
        "| longest kernels (ms) |",
        "|---|---|---|---|---|",
    ]

    def forward():
        return conv_ops.causal_conv1d_fwd(x, weight, bias, list(splits), True)

    ms = _event_ms(forward, reps)
    lines.append(f"| forward | | {ms:.3f} | {2 * tensor_bytes / ms / 1e6:.0f} | {_kernel_ms(forward)} |")
    write()
    leaves = [t.double().requires_grad_(True) for t in (x[:1], weight, bias)]
    cotangent = torch.cat([g[:1] for g in grads], dim=-1).double()
    expected = torch.autograd.grad((conv_reference(*leaves, True) * cotangent).sum(), leaves[:1])[0]

    def backward():
        return conv_ops.causal_conv1d_bwd(grads, x, weight, bias, list(splits), True)

    for tile in tiles:
        try:
            with conv_backward_config(tile):
                err = rel_err(backward()[0][:1].double(), expected)
                ms = _event_ms(backward, reps)
                kernels = _kernel_ms(backward)
            rate = 3 * tensor_bytes / ms / 1e6
            lines.append(f"| backward {tile} | {err:.1e} | {ms:.3f} | {rate:.0f} | {kernels} |")
        except Exception as exc:  # reported; the other configurations still run
            lines.append(f"| backward {tile} | FAIL {type(exc).__name__}: {str(exc)[:80]} | | | |")
        write()
