"""``zoo list [KIND]``: registered components, what each is, its origin and whether it runs here."""

from __future__ import annotations

import argparse

from zoo.registry import BACKEND_SLOTS, KINDS

HELP = "registered components: what each is, origin, runs here?"

# what people type -> the registry kinds it means; singular and plural of each kind
ALIASES: dict[str, tuple[str, ...]] = {
    **{kind: (kind,) for kind in KINDS},
    **{f"{kind}s": (kind,) for kind in KINDS},
    "backend": BACKEND_SLOTS,
    "backends": BACKEND_SLOTS,
}


def kinds_arg(value: str) -> tuple[str, ...]:
    """argparse type: a kind, singular or plural, or ``backends`` (every backend slot)."""
    try:
        return ALIASES[value.strip().lower()]
    except KeyError:
        names = ", ".join([*KINDS, "backends"])
        raise argparse.ArgumentTypeError(f"unknown kind {value[:80]!r}; choose from {names} (or a plural)") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help=HELP, description=HELP)
    p.add_argument(
        "kind",
        nargs="?",
        type=kinds_arg,
        metavar="KIND",
        help=f"only this kind: {', '.join(KINDS)}, or backends; singular or plural (default: all)",
    )
    p.set_defaults(func=run)


def _preset_summary(name: str) -> str:
    """``6 layers, d_model 256, transmamba x6, schedule v9``: what the preset builds."""
    from zoo.builder import resolve_spec

    try:
        spec = resolve_spec(name)
    except Exception as exc:  # a listing reports a broken preset, it does not stop at it
        return f"does not resolve: {type(exc).__name__}"
    counts: dict[str, int] = {}
    for mixer in spec.mixer_names():
        counts[mixer] = counts.get(mixer, 0) + 1
    mixers = " + ".join(f"{m} x{n}" for m, n in counts.items())
    schedule = f", schedule {spec.schedule.name}" if spec.schedule else ""
    return f"{spec.n_layers} layers, d_model {spec.d_model}: {mixers}{schedule}"


def run(args: argparse.Namespace) -> int:
    import zoo
    from zoo.plugins import failed_plugins

    kinds = list(args.kind or KINDS)
    rows = [row for kind in kinds for row in zoo.list(kind)]
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        print(f"{kind} ({len(mine)})")
        width = max((len(r["name"]) for r in mine), default=4)
        owidth = max((len(r["origin"]) for r in mine), default=6)
        for r in mine:
            avail = "yes" if r["available"] else "no "
            what = _preset_summary(r["name"]) if kind == "preset" else r["description"]
            reason = f"  (not here: {r['reason']})" if r["reason"] else ""
            print(f"  {r['name']:<{width}}  {r['origin']:<{owidth}}  available: {avail}  {what}{reason}".rstrip())
    for name, error in failed_plugins().items():
        print(f"plugin {name!r} failed to load: {error}")
    return 0
