"""Training throughput of the presets of one size: tokens/s, peak memory and MFU against T.

transformer, mamba2, hybrid and transmamba (parameter-matched presets, default 400m) and
transformers' LlamaForCausalLM with the transformer preset's shape (the outside anchor),
at T = 2048, 8192, 32768 with the same tokens per optimizer step (32768 = batch x T):
compiled, bf16 autocast, fused AdamW, TF32 on; on CUDA the SSD and converter run on the
Triton plugin (``--backend`` overrides). Rows that fail (out of memory) record the error.
Writes ``train_throughput.json`` (date, device, versions, command, rows) and
``train_throughput.png`` to ``--out``. The same as ``zoo bench --suite train``
(zoo.training.throughput has the method).

    python benchmarks/train_throughput.py                        # H200: 400m, every model and T
    python benchmarks/train_throughput.py --size tiny --seq-lens 64 128 --tokens-per-step 256 \\
        --steps 2 --warmup 1 --no-compile --device cpu           # CPU smoke run
"""

from __future__ import annotations

import argparse
import sys

import torch

import schedules  # noqa: F401  (registers the schedules where the entry points are not installed)
from zoo.cli.bench import add_train_arguments, run_train
from zoo.errors import ZooError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_train_arguments(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        return run_train(args, command=" ".join(["python benchmarks/train_throughput.py", *argv]))
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
