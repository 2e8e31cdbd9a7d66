"""Decode on the GPU: tokens/s and cache memory at long contexts, 400m presets.

transmamba-400m (its V9-relative schedule, evaluated at max_length, and ``@v9``: the
paper's absolute V9, every layer folded by position 8192) vs transformer-400m vs
mamba2-400m, random weights, bf16, batch 1 (and a larger batch at the longest context),
greedy decode, compiled (``reduce-overhead``: inductor + CUDA graphs) by default. Decode parity (prefill + steps == one
forward, fp32, TF32 off) is checked on the GPU first, eager and graphed; a failing
preset is not timed. Stops adding measurements when ``--budget-s`` is spent.

    python benchmarks/gpu_decode.py --contexts 1024 8192 32768 --out gpu_decode.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

import schedules  # noqa: F401  (registers the schedules where the entry points are not installed)
import zoo
from zoo.inference.bench import decode_benchmark, decode_parity, format_table

PRESETS = ("transmamba-400m", "transformer-400m", "mamba2-400m", "transmamba-400m@v9")


def build(label: str, device: str):
    """``PRESET`` or ``PRESET@SCHEDULE`` (the preset with another TransPoint schedule, default
    params: ``transmamba-400m@v9`` is the paper's absolute V9, every layer folded by 8192)."""
    from zoo.builder import resolve_spec

    preset, _, schedule = label.partition("@")
    spec = resolve_spec(preset).model_dump(mode="json")
    if schedule:
        spec["schedule"] = {"name": schedule, "params": {}}
        spec["name"] = label
    return zoo.build(spec, device=device, requires_grad=False).eval()


@torch.no_grad()
def profile_decode(label: str, model, context: int, steps: int = 8, rows: int = 18) -> str:
    """Kernels of the compiled decode step by device time (inductor without CUDA graphs, so
    the profiler sees each kernel; the kernels are those ``reduce-overhead`` replays)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from zoo.inference.bench import make_step
    from zoo.inference.engine import decode, prefill

    device = model.embedding.weight.device
    activity = ProfilerActivity.CUDA if device.type == "cuda" else ProfilerActivity.CPU
    cache = model.allocate_cache(1, context + 4 + steps)
    tokens = prefill(model, cache, torch.randint(0, model.spec.vocab_size, (1, context), device=device)).argmax(-1)
    step = make_step(model, cache, "compile")
    for _ in range(4):
        tokens = decode(model, cache, tokens, step).argmax(-1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    with profile(activities=[activity]) as prof:
        for _ in range(steps):
            tokens = decode(model, cache, tokens, step).argmax(-1)
        sync()
    events = prof.key_averages()
    if device.type != "cuda":
        return events.table(sort_by="self_cpu_time_total", row_limit=rows)
    # kernels only: CPU ops and annotations also carry the device time of what they launched
    kernels = [e for e in events if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
    total_us = sum(e.self_device_time_total for e in kernels) / steps
    table = events.table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=70)
    return f"== {label} at {context}: {total_us:.0f} us of kernels per step ({steps} steps)\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 8192, 32768])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--big-batch", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=300)
    parser.add_argument("--extra-modes", nargs="*", default=[])
    parser.add_argument("--out", default="gpu_decode.json")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--mode", default="reduce-overhead", help="decode mode of the main table")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only print each preset's decode kernels by device time at the longest context",
    )
    args = parser.parse_args()
    if args.profile:
        for preset in args.presets:
            model = build(preset, args.device)
            model = model.to(torch.bfloat16) if args.device == "cuda" else model
            print(profile_decode(preset, model, max(args.contexts)), flush=True)
            del model
            torch.cuda.empty_cache()
        return
    began = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "zoo": zoo.__version__,
    }
    print(json.dumps(info), flush=True)
    results: dict = {"info": info, "parity": {}, "rows": []}

    def save() -> None:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)

    models = {}
    parity_modes = ("eager", args.mode) if args.mode != "eager" else ("eager",)
    for preset in args.presets:
        model = build(preset, args.device)
        for mode in parity_modes:
            err = decode_parity(model, prompt=300, new=24, mode=mode)
            results["parity"][f"{preset}/{mode}"] = err
            print(f"parity fp32 {preset} {mode}: rel err {err:.2e}", flush=True)
        if max(results["parity"][f"{preset}/{m}"] for m in parity_modes) < 1e-3:
            models[preset] = model.to(torch.bfloat16)
        else:
            print(f"{preset}: parity failed, not timed", flush=True)
        save()

    def log(row: dict) -> None:
        print(json.dumps(row), flush=True)
        results["rows"].append(row)
        save()

    def run(contexts, batch_size, mode):
        rows = decode_benchmark(
            list(models),
            contexts,
            batch_size=batch_size,
            steps=args.steps,
            warmup=8,
            device=args.device,
            dtype=torch.bfloat16,
            mode=mode,
            parity_tol=None,
            models=models,
            log=log,
        )
        print(format_table(rows), flush=True)

    # The goals are at the longest context: batch 1 there first, then the big batch, then the
    # shorter contexts, each only while the budget lasts (compiling a graph per shape is slow).
    longest = max(args.contexts)
    run([longest], 1, args.mode)
    if args.big_batch and time.perf_counter() - began < args.budget_s * 0.6:
        run([longest], args.big_batch, args.mode)
    else:
        print(f"budget: skipping batch {args.big_batch}", flush=True)
    shorter = sorted(c for c in args.contexts if c != longest)
    if shorter and time.perf_counter() - began < args.budget_s * 0.8:
        run(shorter, 1, args.mode)
    elif shorter:
        print(f"budget: skipping contexts {shorter}", flush=True)
    for mode in args.extra_modes:
        if time.perf_counter() - began > args.budget_s * 0.6:
            print(f"budget: skipping mode {mode}", flush=True)
            continue
        try:
            for preset, model in models.items():
                err = decode_parity(model, prompt=64, new=8, mode=mode)
                results["parity"][f"{preset}/{mode}/bf16"] = err
                print(f"parity bf16 {preset} {mode}: rel err {err:.2e}", flush=True)
            run([longest], 1, mode)
        except Exception as exc:  # report, keep what was measured
            print(f"mode {mode} failed: {type(exc).__name__}: {exc}", flush=True)
            results[f"error/{mode}"] = f"{type(exc).__name__}: {exc}"
            save()
    print(f"total {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
