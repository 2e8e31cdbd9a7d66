"""Launch-tuning and profiling tools of the SSD GPU benchmark (entry point:
``benchmarks/gpu_ssd.py``, flags ``--breakdown``, ``--sweep``, ``--forward-limits``): the
per-kernel profile of our Triton SSD, the launch-configuration sweep, and the forward's
split at the floor shape (whole forward vs the state walk alone).
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Callable

import torch
from ssd_bench_common import HEAD_DIM, HEADS, bench, copy_bandwidth, fwd_bytes, inputs, log, time_backend

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


def _log_ratio(times: list[float], baseline: list[float]) -> float:
    """Sum over the cells of log(time / the default's time): below 0 is faster."""
    return sum(math.log(v / b) for v, b in zip(times, baseline, strict=True))


def sweep(
    report: list[str], configs: list[dict[str, int]], base, chunk: int = 64, shapes: list[tuple[int, int]] | None = None
) -> dict[str, int] | None:
    """Our Triton SSD (chunk ``chunk``) under each launch configuration: checked against the
    default configuration (y and every gradient, bf16), then timed at ``shapes`` (default
    SWEEP_SHAPES). Returns the configuration with the smallest geometric-mean time over the
    cells among those that match the default (rel. error < 1e-2), or None when none beats
    the default."""
    shapes = shapes or SWEEP_SHAPES
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
    header += " | ".join(f"B{b} T{s} fwd | B{b} T{s} fwd+bwd" for b, s in shapes) + " | geomean vs default |"
    report += [header, "|" + "---|" * (3 + 2 * len(shapes))]
    timings: list[tuple[dict[str, int], float, list[float]]] = []
    for config in configs:
        try:
            tuning = base.replace(**config)
            error = max(rel_err(a, b) for a, b in zip(run(tuning), reference, strict=True))
            times = []
            for batch, seq_len in shapes:
                times += list(time_backend(functools.partial(ssd, chunk_size=chunk, tuning=tuning), batch, seq_len))
        except Exception as exc:  # a failing configuration is reported, the sweep goes on
            traceback.print_exc()
            error, times = float("nan"), []
            cells = [f"FAIL {type(exc).__name__}"] * (2 * len(shapes))
        else:
            cells = [f"{v:.3f}" for v in times]
            timings.append((config, error, times))
        baseline = timings[0][2] if timings and not timings[0][0] else None
        ratio = math.exp(_log_ratio(times, baseline) / len(times)) if baseline and times else float("nan")
        label = ", ".join(f"{k}={v}" for k, v in config.items()) or "(defaults)"
        row = f"| {label} | {error:.1e} | " + " | ".join(cells) + f" | {ratio:.3f} |"
        log(row)
        report.append(row)
    if not timings or timings[0][0]:
        return None
    baseline = timings[0][2]

    def score(entry: tuple[dict[str, int], float, list[float]]) -> float:
        return _log_ratio(entry[2], baseline)

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
