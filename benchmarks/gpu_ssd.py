"""GPU benchmark of the SSD backends: parity first, then side-by-side timings, one run.

    python benchmarks/gpu_ssd.py --out results.md [--chunk-sizes 64,128] [--quick | --shapes 8x8192,1x65536]

1. Parity on the GPU, bf16, through the zoo's conformance kit (outputs, every gradient,
   final states against the fp64 sequential reference): ``ssm: triton`` (each chunk
   size), ``converter: triton``, the fused TransMamba call, ``ssm: mamba_ssm`` and
   ``ssm: chunked``. A backend that fails parity is not timed (reported as such).
2. Timings (median of ``triton.testing.do_bench``), bf16, H=48, P=64, N=128, G=8, at
   (B=1, T in 2K, 8K, 32K, 64K) and (B=8, T=2K): forward, and forward+backward, for our
   Triton SSD vs mamba-ssm's ``mamba_chunk_scan_combined`` vs the chunked pure-PyTorch
   SSD under ``torch.compile``; ratios are from the same run. fla's ``chunk_simple_gla`` (the
   SSD as scalar-decay gated linear attention, ``benchmarks/fla_peer.py``) is timed forward
   only, after its own forward parity, when fla is importable: as an SSD (the head copies of
   B and C, dt * x and the D skip included) and as its kernel alone (inputs made outside the
   timing).
3. The byte floor of the forward (the bytes it must read and write, over the device-copy
   bandwidth measured in the same run): each timed forward against it at every shape, and in
   detail at B=1 T=64K (with ``--quick`` or ``--shapes``, at the first shape). With fla timed,
   the speed-up of ours over its forward at every shape.

Writes a markdown report (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fla_peer  # noqa: E402
import torch  # noqa: E402
from ssd_bench_common import (  # noqa: E402
    GROUPS,
    HEAD_DIM,
    HEADS,
    SHAPES,
    STATE_DIM,
    copy_bandwidth,
    fwd_bytes,
    fwd_flops,
    inputs,
    log,
    time_backend,
    time_forward,
)
from ssd_parity import fused_parity, parity  # noqa: E402
from ssd_tuning import SWEEP_CONFIGS, breakdown, forward_limits, sweep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_ssd.md")
    parser.add_argument("--chunk-sizes", default="64,128")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="only B=1 T=8K and B=8 T=2K")
    which.add_argument(
        "--shapes",
        default=None,
        type=parse_shapes,
        help="the (batch, length) shapes to time instead of the built-in list, e.g. 8x8192,1x65536,8x2048 "
        "(the byte floor is then that of the first); with --sweep, the sweep's shapes",
    )
    parser.add_argument("--skip-compiled", action="store_true")
    parser.add_argument("--breakdown", action="store_true", help="per-kernel profile of ours, then exit")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="time ours under each launch configuration (chunk 64), then exit unless --then-full",
    )
    parser.add_argument("--sweep-chunk", type=int, default=64, help="chunk size of --sweep")
    parser.add_argument(
        "--sweep-configs",
        default="",
        help="--sweep's configurations instead of the built-in list: ';'-separated TUNING overrides, "
        "the first of them the baseline, e.g. ';maxnreg=168;maxnreg=168,programs_per_sm=6'",
    )
    parser.add_argument("--no-peers", action="store_true", help="only our Triton SSD (no mamba_ssm, no torch)")
    parser.add_argument(
        "--forward-limits",
        default=None,
        help="profile the forward at B1 T64K under these ';'-separated TUNING overrides (first = baseline; "
        "chunk = --sweep-chunk), then exit, e.g. ';programs_per_sm=2'",
    )
    parser.add_argument(
        "--tuning", default="", help="Triton SSD launch knobs for the whole run, e.g. chunk_warps=4,stages=2"
    )
    parser.add_argument(
        "--then-full",
        action="store_true",
        help="after --sweep, run the full comparison under the sweep's best configuration",
    )
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    from zoo_plugins.triton_ssd.tuning import Tuning, parse_knobs

    base = Tuning.parse(args.tuning)  # the launch knobs of the whole run
    if args.breakdown:
        breakdown([int(c) for c in args.chunk_sizes.split(",")], base)
        return
    if args.forward_limits is not None:
        import triton

        report = [
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, GPU: "
            f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}",
            f"- command: `python benchmarks/gpu_ssd.py {' '.join(sys.argv[1:])}`",
        ]
        configs = [parse_knobs(c) for c in args.forward_limits.split(";")]
        forward_limits(report, configs, base, args.sweep_chunk)
        Path(args.out).write_text("\n".join(report) + "\n")
        print("\n".join(report), flush=True)
        return

    import triton

    import zoo.backends  # noqa: F401  (core backends)
    from zoo.backends.ssm import ChunkedSSM
    from zoo.ops.ssd.chunked import ssd_chunked
    from zoo_plugins.mamba_ssm import MambaSSM
    from zoo_plugins.triton_ssd import TritonConverter, TritonSSM

    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",")]
    report = [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- GPU: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).multi_processor_count} SMs)",
        f"- torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}",
        f"- command: `python benchmarks/gpu_ssd.py {' '.join(sys.argv[1:])}`",
        f"- Triton SSD launch knobs (Tuning overrides): {base.overrides()}",
        f"- shapes: bf16 x/B/C, fp32 dt/A/D, H={HEADS}, P={HEAD_DIM}, N={STATE_DIM}, G={GROUPS}, "
        "D on, no initial state; fwd under no_grad; fwd+bwd = forward + y.backward(dy)",
    ]
    mamba_ok, mamba_why = MambaSSM.is_available()
    fla_ok, fla_why = (False, "left out (--no-peers)") if args.no_peers else fla_peer.available()
    if args.no_peers:
        mamba_ok, mamba_why, args.skip_compiled = False, "left out (--no-peers)", True
    if fla_ok:
        report.append(
            f"- {fla_peer.PEER}: fla's backward refuses Triton < 3.7.1 on Hopper, so its fwd+bwd cells are n/a"
        )
    else:
        report.append(f"- {fla_peer.PEER} not timed: {fla_why}")

    def ours(tuning: Tuning) -> dict[str, object]:
        knobs = tuning.overrides()
        mine: dict[str, object] = {
            f"triton (chunk {c})": TritonSSM({"chunk_size": c, "tuning": knobs}) for c in chunk_sizes
        }
        mine[f"converter triton (chunk {chunk_sizes[0]})"] = TritonConverter(
            {"chunk_size": chunk_sizes[0], "tuning": knobs}
        )
        return mine

    backends = ours(base)
    if mamba_ok:
        backends["mamba_ssm (chunk 256)"] = MambaSSM({"chunk_size": 256})
    else:
        report.append(f"- mamba_ssm not available: {mamba_why}")
    if not args.skip_compiled:
        backends["chunked (chunk 64)"] = ChunkedSSM({"chunk_size": 64})
    passed = parity(backends, report)
    Path(args.out).write_text("\n".join(report) + "\n")  # a run cut short keeps what it has checked
    for c in chunk_sizes:
        try:
            passed[f"fused {c}"] = fused_parity(c, report, base)
        except Exception as error:  # reported, never fatal: the timings still run
            traceback.print_exc()
            passed[f"fused {c}"] = False
            report.append(f"| transmamba_ssd (chunk {c}) | - | - | - | - | FAIL {type(error).__name__} |")
    Path(args.out).write_text("\n".join(report) + "\n")
    if fla_ok:
        log(f"parity {fla_peer.PEER}")
        passed[fla_peer.PEER] = fla_peer.parity(inputs, [(1, 1000), (2, 333)], report)
    log("parity done")
    Path(args.out).write_text("\n".join(report) + "\n")
    print("\n".join(report), flush=True)
    if args.sweep:
        configs = [parse_knobs(c) for c in args.sweep_configs.split(";")] if args.sweep_configs else SWEEP_CONFIGS
        best = sweep(report, configs, base, args.sweep_chunk, args.shapes)
        report.append(f"\n- best configuration (geometric mean, matching the default): {best or '(defaults)'}")
        # for a later command of the same job (gpu_mixers.py --tuning "$(cat OUT.tuning)")
        chosen = parse_knobs(args.tuning) | (best or {})  # --tuning's knobs stay
        Path(args.out + ".tuning").write_text(",".join(f"{k}={v}" for k, v in chosen.items()))
        Path(args.out).write_text("\n".join(report) + "\n")
        print("\n".join(report), flush=True)
        if not args.then_full:
            return
        base = base.replace(**(best or {}))
        report += ["", f"### Full comparison under Tuning overrides {base.overrides()}"]
        if best:  # our backends' fp64 parity again, under the chosen configuration
            backends.update(ours(base))
            passed.update(parity(ours(base), report))

    timed: dict[str, Callable] = {}
    for c in chunk_sizes:
        if passed[f"triton (chunk {c})"]:
            timed[f"triton c{c}"] = backends[f"triton (chunk {c})"]
    if mamba_ok and passed["mamba_ssm (chunk 256)"]:
        timed["mamba_ssm"] = backends["mamba_ssm (chunk 256)"]
    if fla_ok and passed[fla_peer.PEER]:
        timed[fla_peer.PEER] = fla_peer.fla_ssd
        timed[fla_peer.KERNEL_PEER] = fla_peer.KernelOnly()
    forward_only = {fla_peer.PEER, fla_peer.KERNEL_PEER}
    if not args.skip_compiled and passed.get("chunked (chunk 64)"):
        compiled = torch.compile(ssd_chunked, dynamic=True, fullgraph=True)
        timed["torch chunked (compiled)"] = lambda *a, **k: compiled(*a, chunk_size=64, **k)

    if args.shapes:
        shapes, floor_shape = args.shapes, args.shapes[0]
    else:
        shapes = [(1, 8192), (8, 2048)] if args.quick else SHAPES
        floor_shape = shapes[0] if args.quick else (1, 65536)
    bandwidth = copy_bandwidth()
    results: dict[tuple[str, int, int], tuple[float, float]] = {}
    # Ours and mamba_ssm first at every shape (the goals), the compiled torch peer last, and the
    # report rewritten after each measurement: a run cut short by a time limit keeps what it has.
    order = [n for n in timed if not n.startswith("torch")] + [n for n in timed if n.startswith("torch")]
    groups = [order[:-1], order[-1:]] if order and order[-1].startswith("torch") else [order]
    for group in groups:
        for batch, seq_len in shapes:
            for name in group:
                try:
                    if name in forward_only:
                        results[(name, batch, seq_len)] = (time_forward(timed[name], batch, seq_len), math.nan)
                    else:
                        results[(name, batch, seq_len)] = time_backend(timed[name], batch, seq_len)
                    fwd, fb = results[(name, batch, seq_len)]
                    log(f"{name} B{batch} T{seq_len}: fwd {fwd:.3f} ms, fwd+bwd {fb:.3f} ms")
                except Exception as error:
                    log(f"{name} B{batch} T{seq_len} failed: {type(error).__name__}: {error}")
                    traceback.print_exc()
                    torch.cuda.empty_cache()
                text = render(report, results, list(timed), shapes, floor_shape, bandwidth, forward_only)
                Path(args.out).write_text(text)
    text = render(report, results, list(timed), shapes, floor_shape, bandwidth, forward_only)
    Path(args.out).write_text(text)
    print(text, flush=True)
    log("done")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"8x8192,1x65536"`` -> ``[(8, 8192), (1, 65536)]``; anything else is one argparse error line."""
    shapes = []
    for item in text.split(","):
        batch, _, seq_len = item.strip().partition("x")
        if not (batch.isdigit() and seq_len.isdigit() and int(batch) > 0 and int(seq_len) > 0):
            raise argparse.ArgumentTypeError(f"{item!r} is not BATCHxLENGTH (e.g. 8x8192)")
        shapes.append((int(batch), int(seq_len)))
    return shapes


def render(
    head: list[str],
    results: dict[tuple[str, int, int], tuple[float, float]],
    names: list[str],
    shapes: list[tuple[int, int]],
    floor_shape: tuple[int, int],
    bandwidth: float,
    forward_only: set[str] | None = None,
) -> str:
    """The markdown report: ``head`` (setup, parity), the timing table, the speed-ups over
    mamba_ssm and the forward's byte floor, from the results measured so far ("nan": not yet;
    "n/a": the fwd+bwd of a peer in ``forward_only``)."""
    report = list(head)
    report += ["", "### SSD forward / forward+backward, ms (median)", ""]
    report += ["| B | T | " + " | ".join(f"{n} fwd | {n} fwd+bwd" for n in names) + " |"]
    report += ["|" + "---|" * (2 + 2 * len(names))]
    for batch, seq_len in shapes:
        cells = []
        for n in names:
            fwd, fb = results.get((n, batch, seq_len), (float("nan"), float("nan")))
            cells += [f"{fwd:.3f}", "n/a" if n in (forward_only or ()) else f"{fb:.3f}"]
        report.append(f"| {batch} | {seq_len} | " + " | ".join(cells) + " |")

    ours = [n for n in names if n.startswith("triton")]
    if "mamba_ssm" in names:
        report += ["", "### Speed-up of our Triton SSD over mamba_ssm (same run; >1 = faster)", ""]
        report += [
            "| B | T | " + " | ".join(f"{n} fwd | {n} fwd+bwd" for n in ours) + " |",
            "|" + "---|" * (2 + 2 * len(ours)),
        ]
        for batch, seq_len in shapes:
            base = results.get(("mamba_ssm", batch, seq_len))
            cells = []
            for n in ours:
                mine = results.get((n, batch, seq_len))
                if base and mine:
                    cells += [f"{base[0] / mine[0]:.2f}x", f"{base[1] / mine[1]:.2f}x"]
                else:
                    cells += ["-", "-"]
            report.append(f"| {batch} | {seq_len} | " + " | ".join(cells) + " |")

    peers = [n for n in names if n in (forward_only or ())]
    if peers and ours:
        report += ["", "### Forward: speed-up of ours over each forward-only peer (same run; >1 = faster)", ""]
        report += ["| B | T | " + " | ".join(f"{o} vs {p}" for o in ours for p in peers) + " |"]
        report += ["|" + "---|" * (2 + len(ours) * len(peers))]
        for batch, seq_len in shapes:
            cells = []
            for o in ours:
                for p in peers:
                    mine, theirs = results.get((o, batch, seq_len)), results.get((p, batch, seq_len))
                    cells.append(f"{theirs[0] / mine[0]:.2f}x" if mine and theirs else "-")
            report.append(f"| {batch} | {seq_len} | " + " | ".join(cells) + " |")

    report += ["", f"### Forward against its byte floor at every shape ({bandwidth / 1e12:.2f} TB/s)", ""]
    report += ["| B | T | floor ms | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
    for batch, seq_len in shapes:
        floor = fwd_bytes(batch, seq_len) / bandwidth * 1e3
        cells = []
        for n in names:
            fwd = results.get((n, batch, seq_len), (float("nan"),))[0]
            cells.append("-" if math.isnan(fwd) else f"{fwd / floor:.2f}x")
        report.append(f"| {batch} | {seq_len} | {floor:.3f} | " + " | ".join(cells) + " |")

    batch, seq_len = floor_shape
    floor_ms = fwd_bytes(batch, seq_len) / bandwidth * 1e3
    report += ["", f"### Forward floor at B={batch}, T={seq_len}", ""]
    report.append(
        f"- bytes the forward must move: {fwd_bytes(batch, seq_len) / 1e9:.3f} GB (x, B, C, y in bf16, dt fp32); "
        f"measured copy bandwidth {bandwidth / 1e12:.2f} TB/s -> byte floor {floor_ms:.3f} ms"
    )
    report.append(
        f"- linear-time arithmetic 4*T*H*P*N = {fwd_flops(batch, seq_len) / 1e9:.1f} GFLOP "
        f"-> {fwd_flops(batch, seq_len) / 700e12 * 1e3:.3f} ms at 700 TFLOP/s (below the byte floor)"
    )
    for n in names:
        if (n, batch, seq_len) in results:
            fwd = results[(n, batch, seq_len)][0]
            report.append(f"- {n}: fwd {fwd:.3f} ms = {fwd / floor_ms:.2f}x the byte floor")
    return "\n".join(report) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
