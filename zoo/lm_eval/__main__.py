"""``python -m zoo.lm_eval ARGS``: lm-eval's CLI with the ``zoo`` model registered."""

from __future__ import annotations

import zoo.lm_eval  # noqa: F401  (registers the "zoo" model)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
