"""``zoo demo``: the main job. Builds every preset (tiny ones run a forward pass), then,
when the training package is present, trains a small TransMamba on the built-in corpus,
compares it with its untrained self, plots the loss and samples text."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: build every preset, then train, evaluate, plot and sample")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument(
        "--preset",
        default="transmamba-tiny",
        help="model to train (default: transmamba-tiny; -small is ~17x slower per step)",
    )
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget in minutes")
    p.add_argument("--build-only", action="store_true", help="only build the presets")
    compile_group = p.add_mutually_exclusive_group()
    compile_group.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="train under torch.compile (default: on CUDA only; on a CPU compiling a model this small costs "
        "more time than it saves)",
    )
    compile_group.add_argument("--no-compile", dest="compile", action="store_false", help="train eagerly")
    p.set_defaults(func=run)


def build_all_presets() -> None:
    import torch

    import zoo
    from zoo.registry import PRESET

    for name in PRESET.names():
        start = time.perf_counter()
        small = name.endswith(("-tiny", "-small"))
        model = zoo.build(name, device="cpu" if small else "meta")
        print(zoo.describe(model, seq_len=256 if small else 8192))
        if small:
            ids = torch.randint(0, model.spec.vocab_size, (1, 256))
            with torch.no_grad():
                logits = model(ids)
            print(
                f"  forward [1, 256] -> {list(logits.shape)}, finite: {bool(torch.isfinite(logits).all())}, "
                f"{time.perf_counter() - start:.2f}s"
            )
        else:
            print("  (built on the meta device: no memory allocated)")
        print()


def run(args: argparse.Namespace) -> int:
    build_all_presets()
    if args.build_only:
        return 0
    try:
        from zoo.training.demo import run_demo
    except ImportError as exc:
        print(f"training is not available in this install ({exc}); stopping after the build step")
        return 0
    import torch

    compile = args.compile
    if compile is None:
        compile = torch.cuda.is_available()
        if not compile:
            print("training eagerly on the CPU (compiling costs more than it saves here; --compile to opt in)")
    run_demo(out_dir=args.out, preset=args.preset, minutes=args.minutes, compile=compile)
    return 0
