"""``zoo demo``: the main job. Builds every preset and prints one table of them (the tiny and
small ones run a forward pass on the CPU; per-layer plans are ``zoo build``'s), then,
when the training package is present, trains a small TransMamba on the built-in corpus,
compares it with its untrained self, plots the loss and samples text."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from typing import Any


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
    p.set_defaults(func=run, dir_flags=("out",))


def preset_row(name: str, *, seq_len: int = 256) -> dict[str, Any]:
    """Build preset ``name`` and describe it in one row. Tiny and small presets are built on
    the CPU and run a forward pass of ``[1, seq_len]`` tokens; the larger ones are built on the
    meta device (no memory), which checks the spec, the backends and the parameter count."""
    import torch

    import zoo

    on_cpu = name.endswith(("-tiny", "-small"))
    row: dict[str, Any] = {"preset": name, "built_on": "cpu" if on_cpu else "meta"}
    try:
        model = zoo.build(name, device="cpu" if on_cpu else "meta")
        spec = model.spec
        mixers = Counter(spec.mixer_names())
        schedule = spec.schedule
        row.update(
            params=model.num_parameters(),
            layers=spec.n_layers,
            mixers=", ".join(f"{mixer} x{count}" for mixer, count in mixers.items()),
            schedule="-"
            if schedule is None
            else " ".join([schedule.name, *(f"{k}={v}" for k, v in sorted(schedule.params.items()))]),
        )
        if on_cpu:
            ids = torch.randint(0, spec.vocab_size, (1, seq_len))
            start = time.perf_counter()
            with torch.no_grad():
                logits = model(ids)
            finite = bool(torch.isfinite(logits).all())
            row["forward"] = f"{'ok' if finite else 'NON-FINITE'} {time.perf_counter() - start:.2f}s"
            row["ok"] = finite and list(logits.shape) == [1, seq_len, spec.vocab_size]
        else:
            row["forward"], row["ok"] = "not run (meta)", True
    except Exception as exc:  # noqa: BLE001 - a preset that fails to build is a row of the table, not the end
        row.update(forward=f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", ok=False)
    return row


def format_preset_table(rows: list[dict[str, Any]]) -> str:
    header = ["preset", "parameters", "layers", "mixers", "schedule", "built on", "forward [1, 256]"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---|---|---|---|"]
    for row in rows:
        params = f"{row['params'] / 1e6:,.1f}M" if "params" in row else "-"
        cells = [row["preset"], params, str(row.get("layers", "-")), row.get("mixers", "-"), row.get("schedule", "-")]
        lines.append("| " + " | ".join([*cells, row["built_on"], row["forward"]]) + " |")
    return "\n".join(lines)


def build_all_presets(names: list[str] | None = None) -> bool:
    """Build every preset (or ``names``) and print one table; True when all of them passed.
    ``zoo build PRESET`` and ``zoo plan`` show a preset's per-layer plan."""
    from zoo.registry import PRESET

    rows = [preset_row(name) for name in (names or PRESET.names())]
    print(format_preset_table(rows))
    print("(per-layer plans: zoo build PRESET; schedules at a length: zoo plan)")
    print(flush=True)
    return all(row["ok"] for row in rows)


def run(args: argparse.Namespace) -> int:
    from zoo.errors import ZooError
    from zoo.registry import PRESET

    if not args.minutes > 0:
        raise ZooError(f"--minutes {args.minutes}: must be > 0")
    if args.preset not in PRESET and not os.path.isfile(args.preset):  # a preset or a spec file
        raise ZooError(f"--preset {args.preset!r}: {PRESET.unknown_message(args.preset)}")
    built = build_all_presets()
    if args.build_only:
        return 0 if built else 1
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
