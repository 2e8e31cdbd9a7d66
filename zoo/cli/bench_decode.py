"""``zoo bench-decode``: decode tokens/s and cache bytes vs context length, model against model
(parity-checked first; see zoo.inference.bench). ``--save [NAME]`` keeps the run for
``zoo bench compare`` (zoo.bench_store)."""

from __future__ import annotations

import argparse

from zoo.cli.bench import add_save_arguments, check_save, save


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-decode", help="decode tokens/s and cache memory vs context length")
    p.add_argument("--presets", nargs="+", default=["transmamba-tiny", "transformer-tiny", "mamba2-tiny"])
    p.add_argument("--contexts", type=int, nargs="+", default=[128, 512, 2048])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="default: bfloat16 on cuda, float32 on cpu",
    )
    p.add_argument(
        "--mode", choices=["eager", "compile", "reduce-overhead", "max-autotune", "cudagraph"], default="eager"
    )
    add_save_arguments(p)
    p.set_defaults(func=run, dir_flags=("storage",))


def run(args: argparse.Namespace) -> int:
    import torch

    from zoo.errors import ZooError
    from zoo.inference.bench import decode_benchmark, format_table

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for flag, values in (("--contexts", args.contexts), ("--steps", [args.steps]), ("--batch-size", [args.batch_size])):
        bad = [value for value in values if value < 1]
        if bad:
            raise ZooError(f"{flag} {bad[0]}: must be >= 1")
    if args.mode == "cudagraph" and not device.startswith("cuda"):
        raise ZooError(f"--mode cudagraph needs a CUDA device (--device {device}): use eager or compile there")
    check_save(args)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    rows = decode_benchmark(
        args.presets,
        args.contexts,
        batch_size=args.batch_size,
        steps=args.steps,
        device=device,
        dtype=dtype,
        mode=args.mode,
    )
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print(format_table(rows))
    setting = f"B={args.batch_size} {args.mode} {str(dtype).removeprefix('torch.')}"
    keyed = [
        {"key": f"{row['preset']} ctx={row.get('context', '-')} {setting}", "value": row.get("ms_per_step"), **row}
        for row in rows
    ]
    save(args, "decode", keyed, {"name": "decode ms/step", "unit": "ms", "better": "lower"}, device)
    return 0 if all("error" not in row for row in rows) else 1
