"""The ``zoo`` command. Sub-commands are modules of this package that define ``register``.

Every module ``zoo/cli/<name>.py`` with ``register(subparsers)`` (which adds its parser and
``set_defaults(func=run)``) becomes a sub-command. User-facing errors (``ZooError``,
``ValueError``) print as one readable message with exit code 2, no traceback;
``ZOO_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from zoo.errors import ZooError


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo", description="TransMamba model zoo: build, plan, train, generate, bench."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def _version() -> str:
    from zoo import __version__

    return f"zoo {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ZooError, ValueError, KeyError, FileNotFoundError, ImportError, RuntimeError) as exc:
        if os.environ.get("ZOO_DEBUG") or not (
            isinstance(exc, (ZooError, ValueError, KeyError, FileNotFoundError, ImportError))
        ):
            raise
        print(f"zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
