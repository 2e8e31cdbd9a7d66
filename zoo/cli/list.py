"""``zoo list [KIND]``: registered components, their origin and whether they run here."""

from __future__ import annotations

import argparse

from zoo.registry import KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered components (mixers, backends, schedules, presets)")
    p.add_argument("kind", nargs="?", choices=KINDS, help="only this kind")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import zoo
    from zoo.plugins import failed_plugins

    rows = zoo.list(args.kind)
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        print(f"{kind} ({len(mine)})")
        width = max((len(r["name"]) for r in mine), default=4)
        owidth = max((len(r["origin"]) for r in mine), default=6)
        for r in mine:
            avail = "yes" if r["available"] else "no "
            reason = f"  ({r['reason']})" if r["reason"] else ""
            print(f"  {r['name']:<{width}}  {r['origin']:<{owidth}}  available: {avail}{reason}")
    for name, error in failed_plugins().items():
        print(f"plugin {name!r} failed to load: {error}")
    return 0
