"""``zoo plan SPEC --seq-len T``: per-layer TransPoints, an attention/SSM strip, FLOP split."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="per-layer TransPoints and FLOP split at a length",
        description="per-layer TransPoints, an attention/SSM strip and the estimated FLOP split at a sequence length",
    )
    p.add_argument("spec", help="preset name or path to a spec file")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--schedule", default=None, help="override the spec's schedule by name (e.g. v9)")
    p.add_argument("--relative", action="store_true", help="with --schedule: paper values relative to T")
    p.add_argument("--width", type=int, default=48, help="characters of the attention/SSM strip")
    p.set_defaults(func=run)


def parameter_line(model) -> str:
    """``parameters: 484.5M (embedding 49.2M, tied with the LM head)``, counted once per tensor."""
    total, embedding = model.num_parameters(), model.embedding.weight.numel()
    tied = ", tied with the LM head" if model.spec.tie_embeddings else ""
    return f"parameters: {_millions(total)} (embedding {_millions(embedding)}{tied})"


def _millions(n: int) -> str:
    if n < 1e6:
        return f"{n / 1e3:.1f}K"
    return f"{n / 1e6:.2f}M" if n < 1e8 else f"{n / 1e6:.1f}M"


def run(args: argparse.Namespace) -> int:
    import zoo
    from zoo.flops import layer_flops

    if args.seq_len < 1:
        raise ValueError(f"--seq-len must be >= 1, got {args.seq_len}")
    if args.width < 1:
        raise ValueError(f"--width must be >= 1, got {args.width}")
    if args.relative and not args.schedule:
        raise ValueError("--relative applies to --schedule NAME: name the schedule too (e.g. --schedule v9 --relative)")
    spec = zoo.resolve_spec(args.spec)
    if args.schedule:
        params = {"relative": True} if args.relative else {}
        spec = zoo.load_spec({**spec.model_dump(mode="json"), "schedule": {"name": args.schedule, "params": params}})
    model = zoo.build(spec, device="meta")
    T = args.seq_len
    transpoints = model.transpoints_for(T)
    totals = {"attention": 0.0, "ssm": 0.0, "projections": 0.0}
    print(f"{spec.name or args.spec}: T={T}, schedule {model.schedule!r}")
    print(parameter_line(model))
    print(
        f"{'layer':>5}  {'mixer':<11} {'P':>7}  {'strip (A = attention, S = SSM)':<{args.width}}  "
        f"{'attn%':>6} {'ssm%':>6} {'proj%':>6}"
    )
    for index, block in enumerate(model.blocks):
        P = transpoints[index] if block.uses_transpoint else None
        flops = layer_flops(block, spec.d_model, T, P)
        for key in totals:
            totals[key] += flops[key]
        total = sum(flops.values()) or 1.0
        if P is None:
            kind = spec.layers[index].mixer.name
            strip = ("A" if kind == "attention" else "S") * args.width
            p_text = "-"
        else:
            n_attn = round(args.width * P / T)
            strip = "A" * n_attn + "S" * (args.width - n_attn)
            p_text = str(P)
        print(
            f"{index:>5}  {spec.layers[index].mixer.name:<11} {p_text:>7}  {strip}  "
            f"{100 * flops['attention'] / total:6.1f} {100 * flops['ssm'] / total:6.1f} "
            f"{100 * flops['projections'] / total:6.1f}"
        )
    grand = sum(totals.values())
    print(
        f"total forward FLOPs ~{grand / 1e12:.3f} TFLOP per sequence: attention "
        f"{100 * totals['attention'] / grand:.1f}%, SSM {100 * totals['ssm'] / grand:.1f}%, "
        f"projections+MLP {100 * totals['projections'] / grand:.1f}%"
    )
    return 0
