"""``zoo schema``: the JSON Schema of a model spec, each registered component's params in it."""

from __future__ import annotations

import argparse
import json

SUMMARY = "JSON Schema of a model spec, every component's params"
HELP = "print the JSON Schema of a model spec: every registered component's params, by name"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help=SUMMARY, description=HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.spec_schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
