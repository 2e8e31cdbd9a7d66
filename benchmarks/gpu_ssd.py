"""GPU benchmark of the SSD backends: parity first, then side-by-side timings, one run.

    python benchmarks/gpu_ssd.py --out results.md [--chunk-sizes 64,128] [--quick]

1. Parity on the GPU, bf16, through the zoo's conformance kit (outputs, every gradient,
   final states against the fp64 sequential reference): ``ssm: triton`` (each chunk
   size), ``converter: triton``, the fused TransMamba call, ``ssm: mamba_ssm`` and
   ``ssm: chunked``. A backend that fails parity is not timed (reported as such).
2. Timings (median of ``triton.testing.do_bench``), bf16, H=48, P=64, N=128, G=8, at
   (B=1, T in 2K, 8K, 32K, 64K) and (B=8, T=2K): forward, and forward+backward, for our
   Triton SSD vs mamba-ssm's ``mamba_chunk_scan_combined`` vs the chunked pure-PyTorch
   SSD under ``torch.compile``; ratios are from the same run. fla's ``chunk_simple_gla`` (the
   SSD as scalar-decay gated linear attention, ``benchmarks/fla_peer.py``) is timed forward
   only, after its own forward parity, when fla is importable.
3. The byte floor of the forward at the largest T (the bytes it must read and write,
   over the device-copy bandwidth measured in the same run).

Writes a markdown report (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fla_peer  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HEADS, HEAD_DIM, STATE_DIM, GROUPS = 48, 64, 128, 8
SHAPES = [(1, 2048), (1, 8192), (1, 32768), (1, 65536), (8, 2048)]
START = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - START:7.1f}s] {message}", flush=True)


def inputs(batch: int, seq_len: int, *, grad: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device="cuda", dtype=torch.float32).to(dtype)

    tensors = {
        "x": randn(batch, seq_len, HEADS, HEAD_DIM),
        "dt": F.softplus(randn(batch, seq_len, HEADS, dtype=torch.float32) - 1.0),
        "A": -torch.exp(torch.rand(HEADS, generator=gen, device="cuda") * 2.5 - 1.0),
        "B": randn(batch, seq_len, GROUPS, STATE_DIM) / STATE_DIM**0.5,
        "C": randn(batch, seq_len, GROUPS, STATE_DIM) / STATE_DIM**0.5,
        "D": randn(HEADS, dtype=torch.float32),
    }
    for value in tensors.values():
        value.requires_grad_(grad)
    return tensors


def bench(fn: Callable[[], object], grads: list[torch.Tensor] | None = None) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    return 2 * 2 * 1024**3 / (ms * 1e-3)


# --------------------------------------------------------------------------- parity


def parity(backends: dict[str, object], report: list[str]) -> dict[str, bool]:
    """Each backend vs the fp64 chunked SSD on the GPU (itself tested against the sequential
    scan on CPU): y, final_state and the gradients of x, dt, A, B, C, D, initial_state.
    One reference per case serves all backends (the sequential one would take minutes)."""
    from zoo.ops.ssd.chunked import converter_chunked, ssd_chunked
    from zoo.testing import rel_err, tolerance

    tol = tolerance(torch.bfloat16)
    report += ["", "### Parity on the GPU (bf16 backend vs fp64 reference; relative error)", ""]
    report += ["| backend | case | y / state | final_state | worst gradient | result |", "|---|---|---|---|---|---|"]
    ok = {name: True for name in backends}
    for batch, seq_len, with_init in ((1, 1000, True), (2, 333, False)):
        case_id = f"B{batch}-T{seq_len}-H{HEADS}-P{HEAD_DIM}-N{STATE_DIM}-G{GROUPS}" + ("-init" if with_init else "")
        t = inputs(batch, seq_len, grad=False, seed=seq_len)
        t["init"] = torch.randn(batch, HEADS, HEAD_DIM, STATE_DIM, device="cuda") if with_init else None
        ref = {k: None if v is None else v.double().requires_grad_(True) for k, v in t.items()}
        mine = {k: None if v is None else v.clone().requires_grad_(True) for k, v in t.items()}
        y_ref, state_ref = ssd_chunked(
            ref["x"],
            ref["dt"],
            ref["A"],
            ref["B"],
            ref["C"],
            D=ref["D"],
            initial_state=ref["init"],
            return_final_state=True,
            chunk_size=64,
        )
        # A short prefix: after ~1000 tokens the initial state has decayed below fp32 range,
        # and the relative error of its (~1e-70) gradient would be meaningless.
        conv = slice(0, 96)
        conv_ref = converter_chunked(
            ref["B"][:, conv], ref["x"][:, conv], ref["dt"][:, conv], ref["A"], initial_state=ref["init"]
        )
        w_y, w_s = torch.randn_like(y_ref), torch.randn_like(state_ref)
        names = [k for k, v in ref.items() if v is not None]
        g_ref = dict(
            zip(
                names,
                torch.autograd.grad((y_ref * w_y).sum() + (state_ref * w_s).sum(), [ref[k] for k in names]),
                strict=True,
            )
        )
        conv_names = [k for k in ("x", "dt", "A", "B", "init") if ref[k] is not None]
        g_conv_ref = dict(
            zip(conv_names, torch.autograd.grad((conv_ref * w_s).sum(), [ref[k] for k in conv_names]), strict=True)
        )
        for name, backend in backends.items():
            log(f"parity {name} {case_id}")
            try:
                if name.startswith("converter"):
                    state = backend(
                        mine["B"][:, conv],
                        mine["x"][:, conv],
                        mine["dt"][:, conv],
                        mine["A"],
                        initial_state=mine["init"],
                    )
                    errors = {"state": rel_err(state, conv_ref)}
                    grads = torch.autograd.grad((state.double() * w_s).sum(), [mine[k] for k in conv_names])
                    errors.update({f"d{k}": rel_err(g, g_conv_ref[k]) for k, g in zip(conv_names, grads, strict=True)})
                else:
                    y, state = backend(
                        mine["x"],
                        mine["dt"],
                        mine["A"],
                        mine["B"],
                        mine["C"],
                        D=mine["D"],
                        initial_state=mine["init"],
                        return_final_state=True,
                    )
                    errors = {"y": rel_err(y, y_ref), "final_state": rel_err(state, state_ref)}
                    grads = torch.autograd.grad(
                        (y.double() * w_y).sum() + (state.double() * w_s).sum(), [mine[k] for k in names]
                    )
                    errors.update({f"d{k}": rel_err(g, g_ref[k]) for k, g in zip(names, grads, strict=True)})
                failed = {k: v for k, v in errors.items() if not v <= tol}
                verdict = "pass" if not failed else "FAIL " + ", ".join(f"{k} {v:.2e}" for k, v in failed.items())
            except Exception as error:  # a crash is a failed parity, reported
                traceback.print_exc()
                errors, verdict = {}, f"FAIL {type(error).__name__}: {str(error)[:200]}"
            ok[name] = ok[name] and verdict == "pass"
            grad_errors = {k: v for k, v in errors.items() if k.startswith("d")}
            worst = max(grad_errors.items(), key=lambda kv: kv[1]) if grad_errors else ("-", float("nan"))
            first = errors.get("y", errors.get("state", float("nan")))
            row_id = case_id + (" (prefix 96)" if name.startswith("converter") else "")
            report.append(
                f"| {name} | {row_id} | {first:.2e} | {errors.get('final_state', float('nan')):.2e} "
                f"| {worst[0]} {worst[1]:.2e} | {verdict} |"
            )
    return ok


def fused_parity(chunk_size: int, report: list[str], tuning) -> bool:
    """transmamba_ssd(transpoint) == suffix of the full fp64 scan; its gradients too."""
    from zoo.ops.ssd.chunked import ssd_chunked
    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd import transmamba_ssd

    log(f"parity fused transmamba_ssd chunk {chunk_size}")
    seq_len, transpoint = 1500, 613
    tensors = inputs(1, seq_len, grad=True, seed=3)
    ref = {k: v.detach().double().requires_grad_(True) for k, v in tensors.items()}
    y_ref, state_ref = ssd_chunked(
        ref["x"],
        ref["dt"],
        ref["A"],
        ref["B"],
        ref["C"],
        D=ref["D"],
        return_final_state=True,
        chunk_size=64,
    )
    y_ref = y_ref[:, transpoint:]
    y, state = transmamba_ssd(
        tensors["x"],
        tensors["dt"],
        tensors["A"],
        tensors["B"],
        tensors["C"],
        transpoint=transpoint,
        D=tensors["D"],
        return_final_state=True,
        chunk_size=chunk_size,
        tuning=tuning,
    )
    w_y, w_s = torch.randn_like(y_ref), torch.randn_like(state_ref)
    g_ref = torch.autograd.grad((y_ref * w_y).sum() + (state_ref * w_s).sum(), list(ref.values()))
    g = torch.autograd.grad((y.double() * w_y).sum() + (state.double() * w_s).sum(), list(tensors.values()))
    errors = {"y": rel_err(y, y_ref), "final_state": rel_err(state, state_ref)}
    errors.update({f"d{k}": rel_err(a, b) for k, a, b in zip(tensors, g, g_ref, strict=True)})
    ok = all(e <= 3e-2 for e in errors.values())
    worst = max(errors.items(), key=lambda kv: kv[1])
    report.append(
        f"| transmamba_ssd (chunk {chunk_size}, transpoint {transpoint}) | B1-T{seq_len} | {errors['y']:.2e} "
        f"| {errors['final_state']:.2e} | {worst[0]} {worst[1]:.2e} | {'pass' if ok else 'FAIL'} |"
    )
    return ok


# --------------------------------------------------------------------------- timing


def time_forward(call: Callable, batch: int, seq_len: int) -> float:
    t = inputs(batch, seq_len, grad=False)
    with torch.no_grad():
        return bench(lambda: call(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"]))


def time_forward_backward(call: Callable, batch: int, seq_len: int) -> float:
    t = inputs(batch, seq_len, grad=True)
    dy = torch.randn(batch, seq_len, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)

    def step() -> None:
        y = call(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"])
        y.backward(dy)

    return bench(step, grads=list(t.values()))


def time_backend(call: Callable, batch: int, seq_len: int) -> tuple[float, float]:
    fwd = time_forward(call, batch, seq_len)
    torch.cuda.empty_cache()
    fwd_bwd = time_forward_backward(call, batch, seq_len)
    torch.cuda.empty_cache()
    return fwd, fwd_bwd


def fwd_bytes(batch: int, seq_len: int) -> int:
    """Bytes the forward must move at least: read x, B, C (bf16), dt (fp32); write y."""
    tokens = batch * seq_len
    return tokens * (2 * HEADS * HEAD_DIM * 2 + 2 * GROUPS * STATE_DIM * 2 + HEADS * 4)


def fwd_flops(batch: int, seq_len: int) -> int:
    """Linear-time SSD arithmetic: state update + read-out, 2 * 2*T*H*P*N."""
    return 4 * batch * seq_len * HEADS * HEAD_DIM * STATE_DIM


BREAKDOWN_SHAPES = [(1, 2048), (1, 8192), (1, 65536), (8, 2048)]


def _profile_one(ssd: Callable, chunk_size: int, batch: int, seq_len: int, profile, activity) -> None:
    from torch.autograd import DeviceType

    t = inputs(batch, seq_len, grad=True)
    dy = torch.randn(batch, seq_len, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)

    def step() -> None:
        for value in t.values():
            value.grad = None
        y = ssd(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"], chunk_size=chunk_size)
        y.backward(dy)

    step()
    torch.cuda.synchronize()
    with profile(activities=[activity.CPU, activity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    kernel_ms = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 3e3
    wall_ms = bench(step)
    # wall - kernels: the time the GPU waits on the host (launches, autograd) within a step
    log(
        f"breakdown chunk {chunk_size} B{batch} T{seq_len} (per fwd+bwd step): wall {wall_ms:.3f} ms "
        f"(do_bench), kernels {kernel_ms:.3f} ms, idle {wall_ms - kernel_ms:.3f} ms"
    )
    for event in sorted(events, key=lambda e: -e.self_device_time_total)[:8]:
        print(f"    {event.key[:60]:60s} {event.self_device_time_total / 3e3:8.3f} ms  x{event.count // 3}")
    print("    host side (self CPU time per step):")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]:
        print(f"    {event.key[:60]:60s} {event.self_cpu_time_total / 3e3:8.3f} ms  x{event.count // 3}")


def breakdown(chunk_sizes: list[int], tuning) -> None:
    """Per-kernel device time of our Triton SSD (torch.profiler) and each kernel's registers,
    spills and shared memory: what limits it."""
    from torch.profiler import ProfilerActivity, profile

    from zoo_plugins.triton_ssd import kernels, kernels_bwd, ssd

    for chunk_size in chunk_sizes:
        for batch, seq_len in BREAKDOWN_SHAPES:
            _profile_one(functools.partial(ssd, tuning=tuning), chunk_size, batch, seq_len, profile, ProfilerActivity)
            torch.cuda.empty_cache()
    for name in (
        "_seg_state_fwd",
        "_state_pass",
        "_seg_scan_fwd",
        "_seg_dstate_rev",
        "_seg_dstate_store",
        "_chunk_bwd_dbc",
        "_chunk_bwd_dx",
    ):
        fn = getattr(kernels, name, None) or getattr(kernels_bwd, name)
        try:
            for cache in fn.device_caches.values():
                for compiled in cache[0].values():
                    print(
                        f"    {name}: regs {compiled.n_regs}, spills {compiled.n_spills}, "
                        f"shared {compiled.metadata.shared}, warps {compiled.metadata.num_warps}, "
                        f"stages {compiled.metadata.num_stages}"
                    )
        except Exception as error:
            print(f"    {name}: no compile info ({type(error).__name__}: {error})")


SWEEP_SHAPES = [(1, 8192), (1, 65536), (8, 2048)]

# Launch configurations the sweep tries (Tuning overrides on top of the run's --tuning).
# The defaults themselves (programs per SM, walking warps, chunk size) come from a wider grid
# (docs/benchmarks.md, "Launch configuration"); these rows try the remaining knobs: pipeline
# stages, the chunk kernels' warps and register caps (2 programs per SM at 8 warps). The
# sweep runs chunk 64; what it picks is meant for chunk 64.
SWEEP_CONFIGS: list[dict[str, int]] = [
    {},
    {"stages": 2},
    {"chunk_warps": 8},
    {"chunk_maxnreg": 128},
    {"warps": 8, "maxnreg": 128},
    {"stages": 2, "chunk_maxnreg": 128},
]


def sweep(report: list[str], configs: list[dict[str, int]], base, chunk: int = 64) -> dict[str, int] | None:
    """Our Triton SSD (chunk ``chunk``) under each launch configuration: checked against the
    default configuration (y and every gradient, bf16), then timed at three shapes. Returns
    the configuration with the smallest geometric-mean time over the six cells among those
    that match the default (rel. error < 1e-2), or None when none beats the default."""
    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd import ssd

    t = inputs(1, 8192, grad=True, seed=5)
    dy = torch.randn_like(t["x"])

    def run(tuning) -> list[torch.Tensor]:
        y = ssd(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"], chunk_size=chunk, tuning=tuning)
        return [y, *torch.autograd.grad((y.float() * dy.float()).sum(), list(t.values()))]

    reference = run(base)
    report += ["", f"### Launch-configuration sweep of our Triton SSD (chunk {chunk}), ms (median)", ""]
    header = "| TUNING overrides | max rel err vs default | "
    header += " | ".join(f"B{b} T{s} fwd | B{b} T{s} fwd+bwd" for b, s in SWEEP_SHAPES) + " | geomean vs default |"
    report += [header, "|" + "---|" * (3 + 2 * len(SWEEP_SHAPES))]
    timings: list[tuple[dict[str, int], float, list[float]]] = []
    for config in configs:
        try:
            tuning = base.replace(**config)
            error = max(rel_err(a, b) for a, b in zip(run(tuning), reference, strict=True))
            times = []
            for batch, seq_len in SWEEP_SHAPES:
                times += list(time_backend(functools.partial(ssd, chunk_size=chunk, tuning=tuning), batch, seq_len))
        except Exception as exc:  # a failing configuration is reported, the sweep goes on
            traceback.print_exc()
            error, times = float("nan"), []
            cells = [f"FAIL {type(exc).__name__}"] * (2 * len(SWEEP_SHAPES))
        else:
            cells = [f"{v:.3f}" for v in times]
            timings.append((config, error, times))
        base = timings[0][2] if timings and not timings[0][0] else None
        ratio = (
            math.exp(sum(math.log(v / b) for v, b in zip(times, base, strict=True)) / len(times))
            if base and times
            else float("nan")
        )
        label = ", ".join(f"{k}={v}" for k, v in config.items()) or "(defaults)"
        row = f"| {label} | {error:.1e} | " + " | ".join(cells) + f" | {ratio:.3f} |"
        log(row)
        report.append(row)
    if not timings or timings[0][0]:
        return None
    base = timings[0][2]

    def score(entry: tuple[dict[str, int], float, list[float]]) -> float:
        return sum(math.log(v / b) for v, b in zip(entry[2], base, strict=True))

    good = [entry for entry in timings if entry[1] < 1e-2]
    if not good:
        return None
    best = min(good, key=score)
    return best[0] if best[0] and score(best) < 0 else None


def forward_limits(
    report: list[str], configs: list[dict[str, int]], base, chunk: int, batch: int = 1, seq_len: int = 65536
) -> None:
    """What the forward at the floor shape spends its time on, per launch configuration: the
    whole forward (outputs from token 0), the state walk alone (outputs from token T: the
    converter's path, which reads x, dt, B and no C and writes no y), and each kernel's device
    time (torch.profiler) of the whole forward. Measured, not inferred: the difference of the
    first two is what the read-out (C h, the intra-chunk outputs, the y store) costs."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from zoo.testing import rel_err
    from zoo_plugins.triton_ssd import launch

    t = inputs(batch, seq_len, grad=False)
    args = (t["x"], t["dt"], t["A"], t["B"], t["C"], t["D"], None)
    bandwidth = copy_bandwidth()
    floor_ms = fwd_bytes(batch, seq_len) / bandwidth * 1e3
    report += [
        "",
        f"### Forward limits at B{batch} T{seq_len} (chunk {chunk}), ms",
        "",
        f"Byte floor {floor_ms:.3f} ms ({fwd_bytes(batch, seq_len) / 1e9:.3f} GB at the measured "
        f"{bandwidth / 1e12:.2f} TB/s). 'walk only' = outputs from token T (no C read, no y written).",
        "",
        "| TUNING overrides | rel err vs default | forward | walk only | read-out (difference) | "
        "forward / floor | kernels of the forward (device ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = None
    with torch.no_grad():
        for config in configs:
            label = ", ".join(f"{k}={v}" for k, v in config.items()) or "(defaults)"
            try:
                tuning = base.replace(**config)
                full = functools.partial(launch.forward, *args, 0, chunk, False, tuning)
                walk = functools.partial(launch.forward, *args, seq_len, chunk, False, tuning)
                y, final, _ = full()
                if reference is None:
                    reference = (y, final)
                error = max(rel_err(y, reference[0]), rel_err(final, reference[1]))
                full_ms, walk_ms = bench(full), bench(walk)
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(3):
                        full()
                    torch.cuda.synchronize()
                kernels = sorted(
                    (e for e in prof.key_averages() if e.device_type == DeviceType.CUDA),
                    key=lambda e: -e.self_device_time_total,
                )
                split = ", ".join(f"{e.key[:24]} {e.self_device_time_total / 3e3:.3f}" for e in kernels[:4])
                row = (
                    f"| {label} | {error:.1e} | {full_ms:.3f} | {walk_ms:.3f} | {full_ms - walk_ms:.3f} | "
                    f"{full_ms / floor_ms:.2f}x | {split} |"
                )
            except Exception as exc:  # a failing configuration is reported, the rest go on
                traceback.print_exc()
                row = f"| {label} | FAIL {type(exc).__name__}: {str(exc)[:80]} | | | | | |"
            log(row)
            report.append(row)
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_ssd.md")
    parser.add_argument("--chunk-sizes", default="64,128")
    parser.add_argument("--quick", action="store_true", help="only B=1 T=8K and B=8 T=2K")
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
    for c in chunk_sizes:
        try:
            passed[f"fused {c}"] = fused_parity(c, report, base)
        except Exception as error:  # reported, never fatal: the timings still run
            traceback.print_exc()
            passed[f"fused {c}"] = False
            report.append(f"| transmamba_ssd (chunk {c}) | - | - | - | - | FAIL {type(error).__name__} |")
    if fla_ok:
        log(f"parity {fla_peer.PEER}")
        passed[fla_peer.PEER] = fla_peer.parity(inputs, [(1, 1000), (2, 333)], report)
    log("parity done")
    Path(args.out).write_text("\n".join(report) + "\n")
    print("\n".join(report), flush=True)
    if args.sweep:
        configs = [parse_knobs(c) for c in args.sweep_configs.split(";")] if args.sweep_configs else SWEEP_CONFIGS
        best = sweep(report, configs, base, args.sweep_chunk)
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
    forward_only = {fla_peer.PEER}
    if not args.skip_compiled and passed.get("chunked (chunk 64)"):
        compiled = torch.compile(ssd_chunked, dynamic=True, fullgraph=True)
        timed["torch chunked (compiled)"] = lambda *a, **k: compiled(*a, chunk_size=64, **k)

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

    if "mamba_ssm" in names:
        ours = [n for n in names if n.startswith("triton")]
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
