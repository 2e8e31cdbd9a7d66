"""``zoo build SPEC``: validate a spec (file or preset), build it on the meta device, print the plan."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="validate and build a spec or preset; print the per-layer plan")
    p.add_argument("spec", help="preset name or path to a .json/.yaml spec")
    p.add_argument("--device", default="meta", help="device to build on (default: meta, allocates nothing)")
    p.add_argument("--seq-len", type=int, default=None, help="show each layer's TransPoint at this length")
    p.add_argument("--json", action="store_true", help="print the resolved spec as JSON instead")
    p.add_argument(
        "--allow-large", action="store_true", help="build on --device even when the weights exceed its free memory"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import zoo

    spec = zoo.resolve_spec(args.spec)
    if args.json:
        print(spec.to_json())
        return 0
    model = zoo.build(spec, device=args.device, allow_large=args.allow_large)
    print(zoo.describe(model, args.seq_len))
    return 0
