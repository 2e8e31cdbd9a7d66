"""Where a training step's memory goes, per model, without a GPU (zoo.training.memory_profile).

Builds each preset with the backends ``auto`` picks on CUDA (SSD, converter and causal conv on
the Triton plugin, attention on SDPA, norm in PyTorch), traces one bf16-autocast training step
the way ``zoo.build(compile=True)`` compiles it, and sizes what the step keeps for the backward
from the partitioned forward graph: nothing runs and no activation is allocated, so the 400m
presets at 32K tokens per step profile on a CPU (the Triton kernels' fake kernels size their
outputs; TRITON_INTERPRET=1 is set so the plugin builds without a GPU). ``--states`` adds a
row per SSD model for each way of keeping the SSD's chunk states (``save`` / ``recompute``),
``--norm-output`` one for each way of keeping the gated norm's output (the ``norm`` backend's
``output``; without activation checkpointing only: the policies recompute the norm anyway), and
``--conv-output`` one for each way of keeping the causal conv's outputs (the ``conv`` backend's
``output``; likewise without checkpointing only), and ``--mlp-hidden`` one per model for each
way of keeping SwiGLU's hidden silu(gate) * up (the spec's ``mlp.hidden``; likewise), and
``--ssd-gate`` one per SSD model for each way of keeping the gate z (the SSD mixers' ``gate``
param; likewise).

    python benchmarks/activation_memory.py                          # 400m, B=4 x T=8192
    python benchmarks/activation_memory.py --size tiny --batch 2 --seq-len 64 --out /tmp/mem

Writes ``activation_memory.json`` (every site of every row) and ``activation_memory.md`` (the
totals and each row's largest sites) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the plugin builds on a CPU

import torch  # noqa: E402

import schedules  # noqa: E402,F401  (registers the schedules where the entry points are not installed)

GIB = 2**30
SSD_SLOTS = ("ssm", "converter")


def _backends(model: str, states: str | None, norm_output: str = "save", conv_output: str = "save") -> dict[str, str]:
    """What ``auto`` picks on CUDA, spelled out (on this CPU ``auto`` would pick PyTorch). The
    TransMamba prefix attention's q/k (d_state wide) and values (headdim wide) differ in width:
    on CUDA the sdpa backend cuts the values into q/k-wide slices for the fused kernels
    (``fold_slices``), on a CPU it would take the math kernel, which keeps the score matrix."""
    ssd = "triton" if states is None else f"triton:states={states}"
    attention = "sdpa:grouping=fold_slices" if model.startswith("transmamba") else "sdpa"
    norm = f"torch:output={norm_output}"
    conv = f"triton:output={conv_output}"
    return {"ssm": ssd, "converter": ssd, "conv": conv, "attention": attention, "norm": norm}


def _row(
    model: str,
    size: str,
    states: str | None,
    ac: str,
    norm_output: str,
    conv_output: str,
    mlp_hidden: str,
    ssd_gate: str,
    args: argparse.Namespace,
) -> dict:
    import zoo
    from zoo.overrides import spec_with_backends, spec_with_recompute
    from zoo.training.distributed import prepare_model
    from zoo.training.memory_profile import profile_training_memory
    from zoo.training.runs import resolve_spec
    from zoo.training.throughput import preset_name

    preset = preset_name(model, size)
    spec, applied = spec_with_backends(resolve_spec(preset), _backends(model, states, norm_output, conv_output))
    if states is not None and not set(SSD_SLOTS) & applied:
        return {}
    spec = spec_with_recompute(spec, mlp_hidden=mlp_hidden, ssd_gate=ssd_gate)
    built = zoo.build(spec, device="cpu", compile=False, allow_large=True)
    prepare_model(built, context=None, activation_checkpointing=ac)  # the trainer's wrapping (none: nothing)
    start = time.perf_counter()
    memory = profile_training_memory(built, batch=args.batch, seq_len=args.seq_len, loss=args.loss)
    row = {
        "model": preset,
        "states": states or "-",
        "norm_output": "-" if model == "transformer" else norm_output,
        "conv_output": "-" if model == "transformer" else conv_output,
        "mlp_hidden": mlp_hidden,
        "ssd_gate": "-" if model == "transformer" else ssd_gate,
        "ac": ac,
    }
    row["trace_s"] = round(time.perf_counter() - start, 1)
    row.update(memory.to_dict())
    del built
    return row


def _markdown(rows: list[dict], top: int) -> str:
    lines = [
        "| model | SSD states | norm output | conv output | MLP hidden | SSD gate | activation checkpointing "
        "| params | saved activations GiB | logits + loss GiB | weights, grads, AdamW GiB | sum GiB |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['states']} | {row['norm_output']} | {row.get('conv_output', 'save')} | "
            f"{row.get('mlp_hidden', 'save')} | {row.get('ssd_gate', 'save')} | {row['ac']} | "
            f"{row['n_params'] / 1e6:.1f}M | "
            f"{row['saved_bytes'] / GIB:.2f} | "
            f"{row['loss_bytes'] / GIB:.2f} | {row['state_bytes'] / GIB:.2f} | {row['total_bytes'] / GIB:.2f} |"
        )
    for row in rows:
        lines += [
            "",
            f"**{row['model']}** (SSD states: {row['states']}, norm output: {row['norm_output']}, "
            f"conv output: {row.get('conv_output', 'save')}, MLP hidden: {row.get('mlp_hidden', 'save')}, "
            f"SSD gate: {row.get('ssd_gate', 'save')}, activation checkpointing: {row['ac']}), "
            "largest saved sites:",
            "",
        ]
        lines += ["| GiB | tensors | where | op | one of them |", "|---:|---:|---|---|---|"]
        for site in row["saved"][:top]:
            shape = "x".join(str(size) for size in site["shape"])
            lines.append(
                f"| {site['nbytes'] / GIB:.3f} | {site['count']} | `{site['where']}` | `{site['op']}` | "
                f"{shape} {site['dtype']} |"
            )
    return "\n".join(lines) + "\n"


def _variants(model: str, ac: str, args: argparse.Namespace) -> list[tuple[str | None, str, str, str, str]]:
    """(SSD states, norm output, conv output, MLP hidden, SSD gate) of each row: the
    transformer has only MLP hidden; ``selective`` and ``full`` recompute the norm, the conv and
    SwiGLU's product whatever their settings, so those rows keep the defaults (``cheap``
    recomputes only the Triton norm and conv: its rows vary the PyTorch norm's output, and keep
    the conv's default); the gate varies without checkpointing only."""
    hiddens = args.mlp_hidden if ac == "none" else ["save"]
    if model == "transformer":
        return [(None, "save", "save", hidden, "save") for hidden in hiddens]
    outputs = args.norm_output if ac in ("none", "cheap") else ["save"]
    convs = args.conv_output if ac == "none" else ["save"]
    gates = args.ssd_gate if ac == "none" else ["save"]
    return [
        (states, output, conv, hidden, gate)
        for gate in gates
        for hidden in hiddens
        for conv in convs
        for output in outputs
        for states in args.states
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["transformer", "transmamba", "mamba2", "hybrid"])
    parser.add_argument("--size", default="400m")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--loss", choices=("logits", "chunked"), default="logits")
    parser.add_argument("--states", nargs="+", choices=("save", "recompute"), default=["save", "recompute"])
    parser.add_argument(
        "--norm-output",
        nargs="+",
        choices=("save", "recompute"),
        default=["save", "recompute"],
        help="the gated norm's output kept or recomputed (SSD models, rows without checkpointing)",
    )
    parser.add_argument(
        "--conv-output",
        nargs="+",
        choices=("save", "recompute"),
        default=["save"],
        help="the causal conv's outputs kept or recomputed (SSD models, rows without checkpointing)",
    )
    parser.add_argument(
        "--mlp-hidden",
        nargs="+",
        choices=("save", "recompute"),
        default=["save"],
        help="SwiGLU's hidden silu(gate) * up kept or recomputed (every model, rows without checkpointing)",
    )
    parser.add_argument(
        "--ssd-gate",
        nargs="+",
        choices=("save", "recompute"),
        default=["save"],
        help="the SSD mixers' gate z kept from in_proj or formed again in the backward (SSD models, rows "
        "without checkpointing)",
    )
    parser.add_argument(
        "--ac",
        nargs="+",
        choices=("none", "selective", "cheap", "full"),
        default=["none", "cheap", "selective"],
        help="activation checkpointing, as the trainer applies it (zoo.training.distributed.prepare_model)",
    )
    parser.add_argument("--top", type=int, default=8, help="sites per model in the markdown")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/activation-memory"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    from zoo.errors import ZooError

    rows = []
    for model in args.models:
        for ac in args.ac:
            for states, norm_output, conv_output, mlp_hidden, ssd_gate in _variants(model, ac, args):
                label = (
                    f"{model}-{args.size} states={states or '-'} norm={norm_output} conv={conv_output} "
                    f"mlp={mlp_hidden} gate={ssd_gate} ac={ac}"
                )
                print(f"{label}: tracing ...", file=sys.stderr, flush=True)
                try:
                    row = _row(model, args.size, states, ac, norm_output, conv_output, mlp_hidden, ssd_gate, args)
                except ZooError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                if row:
                    rows.append(row)
                    print(
                        f"  saved {row['saved_bytes'] / GIB:.2f} GiB, sum {row['total_bytes'] / GIB:.2f} GiB "
                        f"({row['trace_s']} s)",
                        file=sys.stderr,
                    )
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python benchmarks/activation_memory.py", *argv]),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "rows": rows,
    }
    (args.out / "activation_memory.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "activation_memory.md").write_text(_markdown(rows, args.top))
    print(_markdown(rows, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
