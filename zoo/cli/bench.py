"""``zoo bench``: backends and models side by side (scan vs chunked; eager vs sdpa vs flex;
eager vs compiled), with ratios. Each backend must match the reference before it is timed.

``zoo bench --suite train``: training throughput (tokens/s, peak memory, MFU) of the
transformer, mamba2, hybrid and transmamba presets of one size and a Llama anchor, at
several sequence lengths with the same tokens per step (zoo.training.throughput); writes
JSON and a PNG to ``--out``. ``--suite all`` leaves it out (it trains 400M models).

``--save [NAME]`` keeps a run (machine info, rows with timings and parity) as
``.benchmarks/NAME.json`` (``--storage DIR``); ``zoo bench compare A B`` prints two saved
runs side by side with speed-ups (zoo.bench_store)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.errors import ZooError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time backends and models side by side (parity-checked); --suite train: "
        "training tokens/s, memory and MFU per model and length",
    )
    p.add_argument(
        "--suite",
        choices=["ssm", "attention", "model", "all", "train"],
        default="all",
        help="all: ssm, attention and model (not train)",
    )
    p.add_argument("--seq-len", type=int, default=None, help="tokens (default: ssm 2048, attention 1024, model 512)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--preset", default="transmamba-tiny", help="model suite: preset to time")
    p.add_argument("--repeats", type=int, default=3)
    add_save_arguments(p)
    add_train_arguments(p.add_argument_group("train suite"))
    p.set_defaults(func=run, dir_flags=("out", "storage"))
    compare = p.add_subparsers(dest="bench_command", metavar="compare").add_parser(
        "compare", help="two saved runs side by side (zoo bench compare A B)"
    )
    compare.add_argument("runs", nargs=2, metavar="RUN", help="saved run names (or paths to their JSON files)")
    # SUPPRESS: a --storage given before "compare" must not be reset by this parser's default
    compare.add_argument("--storage", default=argparse.SUPPRESS, help="where the runs are (default .benchmarks)")
    compare.set_defaults(func=run_compare, dir_flags=("storage",))


def add_save_arguments(parser: argparse.ArgumentParser) -> None:
    """``--save [NAME]`` and ``--storage DIR`` (shared with ``zoo bench-decode``)."""
    parser.add_argument(
        "--save",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="keep this run as STORAGE/NAME.json (default name: UTC date-time and suite)",
    )
    parser.add_argument("--storage", default=None, help="directory of saved runs (default .benchmarks)")


def save(args: argparse.Namespace, suite: str, rows: list[dict], metric: dict[str, str], device: str) -> None:
    """Save ``rows`` when ``--save`` was given, and say where."""
    if args.save is None:
        return
    from zoo import bench_store

    path = bench_store.save_run(
        args.save or bench_store.default_name(suite),
        suite=suite,
        rows=rows,
        metric=metric,
        device=device,
        command=" ".join(["zoo", *sys.argv[1:]]),
        storage=args.storage or bench_store.DEFAULT_STORAGE,
    )
    print(f"saved {path}")


def check_save(args: argparse.Namespace) -> None:
    """Refuse a ``--save NAME`` that could not be written before the benchmark runs, not after."""
    if getattr(args, "save", None):
        from zoo import bench_store

        bench_store.check_save_name(args.save, args.storage or bench_store.DEFAULT_STORAGE)


def run_compare(args: argparse.Namespace) -> int:
    from zoo import bench_store

    storage = getattr(args, "storage", None) or bench_store.DEFAULT_STORAGE
    first, second = (bench_store.load_run(name, storage) for name in args.runs)
    print(bench_store.compare_runs(first, second))
    return 0


def add_train_arguments(group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The train suite's flags (shared with benchmarks/train_throughput.py)."""
    from zoo.cli.train import add_recompute_args
    from zoo.training.throughput import ANCHOR, ARCHS

    group.add_argument(
        "--models",
        nargs="+",
        default=[*ARCHS, ANCHOR],
        help=f"architectures (at --size), preset names, spec files, or {ANCHOR} (transformers' Llama with the "
        "transformer preset's shape); default: all four and the anchor",
    )
    group.add_argument("--size", default="400m", help="preset size: tiny, small, 400m, 1.5b (default 400m)")
    group.add_argument("--seq-lens", type=int, nargs="+", default=[2048, 8192, 32768])
    group.add_argument("--tokens-per-step", type=int, default=32768, help="batch x T, the same in every row")
    group.add_argument(
        "--micro-batch-size",
        type=int,
        default=None,
        help="sequences per forward/backward (gradient accumulation); default: the whole batch",
    )
    group.add_argument("--steps", type=int, default=10, help="timed steps per row")
    group.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    group.add_argument("--no-compile", action="store_true", help="run eagerly")
    group.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: a cheap check)")
    group.add_argument(
        "--compile-mode",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        default=None,
        help="torch.compile mode of every row (reduce-overhead: the step's kernels replayed as CUDA graphs); "
        "default: the spec's own (the presets: inductor's default)",
    )
    group.add_argument(
        "--precision", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    group.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="accelerator peak for MFU (default on CUDA: 989, the H100/H200 dense bf16 spec)",
    )
    group.add_argument(
        "--backend",
        action="append",
        default=None,
        metavar="SLOT=NAME[:KEY=VALUE,...]",
        help="backend override for every layer with that slot (params after a colon, e.g. "
        "ssm=triton:states=recompute), repeatable; default: the presets' own "
        "(auto: the Triton SSD, converter and conv on CUDA, PyTorch on a CPU)",
    )
    group.add_argument(
        "--loss",
        nargs="+",
        choices=["logits", "chunked"],
        default=["logits"],
        help="the loss of the step: logits (default; cross-entropy of the logits) and/or chunked (the model's "
        "chunked loss without the logits); both: one row each, an A/B in one run",
    )
    group.add_argument(
        "--ac",
        choices=["none", "selective", "cheap", "full"],
        default="none",
        help="activation checkpointing as the trainer applies it (each block compiled on its own); default none: "
        "the whole model compiled as one graph",
    )
    add_recompute_args(group)
    group.add_argument(
        "--ssd-in-proj",
        choices=("split", "joined"),
        default=None,
        help="the SSD mixers' in_proj in training: a matmul per part (split) or one matmul whose gradients the "
        "backward joins (joined); default: the spec's own (the presets: split)",
    )
    group.add_argument("--budget-s", type=float, default=None, help="start no row after this many seconds")
    group.add_argument("--out", default="runs/bench/train", help="directory for train_throughput.json/.png")
    group.add_argument("--no-plot", action="store_true", help="JSON only (no matplotlib needed)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_train(args: argparse.Namespace, command: str | None = None) -> int:
    """The train suite from parsed flags: rows to stdout as they finish, then the table and files."""
    import torch

    from zoo.errors import ZooError
    from zoo.models.presets import SIZES
    from zoo.overrides import parse_backend_overrides
    from zoo.registry import PRESET
    from zoo.training import throughput, throughput_report

    device = torch.device(args.device)
    counts = [
        ("--steps", args.steps),
        ("--tokens-per-step", args.tokens_per_step),
        ("--micro-batch-size", 1 if args.micro_batch_size is None else args.micro_batch_size),
        *(("--seq-lens", t) for t in args.seq_lens),
    ]
    for name, value in counts:
        if value < 1:
            raise ZooError(f"{name} must be >= 1, got {value}")
    if args.warmup < 0:
        raise ZooError(f"--warmup must be >= 0, got {args.warmup}")
    check_save(args)
    if args.size not in SIZES:
        raise ZooError(f"--size {args.size!r}: the sizes are {', '.join(SIZES)}")
    for model in args.models:
        if model not in (*throughput.ARCHS, throughput.ANCHOR) and model not in PRESET and not Path(model).is_file():
            raise ZooError(
                f"--models {model!r}: give an architecture ({', '.join(throughput.ARCHS)}), "
                f"a preset name (zoo list preset), a spec file or {throughput.ANCHOR}"
            )
    if args.compile_mode is not None and args.no_compile:
        raise ZooError("--compile-mode needs a compiled model: drop --no-compile or --compile-mode")
    if args.compile_mode is not None and args.compile_backend != "inductor":
        raise ZooError(
            f"--compile-mode is inductor's; --compile-backend {args.compile_backend} takes no mode: drop one of them"
        )
    if args.compile_mode is not None and args.ac != "none":
        raise ZooError(
            f"--compile-mode {args.compile_mode} applies to the whole-model compile; with --ac {args.ac} the "
            "trainer compiles each block itself: drop --ac or --compile-mode"
        )
    backends = parse_backend_overrides(args.backend or [])
    config = throughput.ThroughputConfig(
        tokens_per_step=args.tokens_per_step,
        micro_batch_size=args.micro_batch_size,
        steps=args.steps,
        warmup=args.warmup,
        compile=not args.no_compile,
        compile_backend=args.compile_backend,
        compile_mode=args.compile_mode,
        precision=args.precision,
        peak_tflops=args.peak_tflops or (989.0 if device.type == "cuda" else None),
        budget_s=args.budget_s,
        losses=tuple(dict.fromkeys(args.loss)),
        activation_checkpointing=args.ac,
        mlp_hidden=args.mlp_hidden,
        ssd_gate=args.ssd_gate,
        ssd_in_proj=args.ssd_in_proj,
    )
    env = throughput_report.environment(
        device, command or " ".join(["zoo", *sys.argv[1:]]), config, backends, args.size
    )
    print(
        f"training throughput on {env['device']}, torch {torch.__version__}: {args.models} at T={args.seq_lens}, "
        f"{args.tokens_per_step} tokens per step, backends {backends or 'as in the presets'}",
        flush=True,
    )
    report = Path(args.out) / "train_throughput.json"
    if report.exists():  # after every check: a refusal stays the only line
        print(f"note: {report} is replaced when this run ends (--save NAME keeps a run)", flush=True)
    rows = throughput.run_throughput(
        args.models,
        args.seq_lens,
        size=args.size,
        device=device,
        config=config,
        backends=backends,
        log=lambda line: print(line, flush=True),
    )
    print(throughput_report.format_table(rows))
    for path in throughput_report.write_report(rows, env, args.out, plot=not args.no_plot):
        print(f"wrote {path}")
    if getattr(args, "save", None) is not None:
        keyed = [
            {"key": f"{throughput_report.row_label(row)} T={row['seq_len']}", "value": row.get("tokens_per_s"), **row}
            for row in rows
        ]
        save(args, "train", keyed, {"name": "tokens/s", "unit": "tokens/s", "better": "higher"}, args.device)
    return 0 if all("error" not in row for row in rows) else 1


def run(args: argparse.Namespace) -> int:
    import torch

    from zoo import bench

    if args.suite == "train":
        return run_train(args)
    if args.repeats < 1:
        raise ZooError(f"--repeats {args.repeats}: must be >= 1")
    if args.backend:
        raise ZooError(f"--backend {' '.join(args.backend)}: applies to --suite train only (drop it here)")
    check_save(args)
    rows = []
    if args.suite in ("ssm", "all"):
        print(f"ssm suite on {args.device} ...", flush=True)
        rows += bench.ssm_suite(args.seq_len or 2048, device=args.device, repeats=args.repeats)
    if args.suite in ("attention", "all"):
        print(f"attention suite on {args.device} ...", flush=True)
        rows += bench.attention_suite(args.seq_len or 1024, device=args.device, repeats=args.repeats)
    if args.suite in ("model", "all"):
        print(f"model suite on {args.device} (compiling, ~30 s on CPU) ...", flush=True)
        rows += bench.model_suite(args.preset, seq_len=args.seq_len or 512, device=args.device, repeats=args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(bench.format_rows(rows))
    save(args, args.suite, bench.saved_rows(rows), bench.METRIC, args.device)
    return 0
