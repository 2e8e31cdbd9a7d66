"""FSDP2 training throughput and peak memory on one GPU, with and without activation checkpointing.

Run under torchrun (one process per GPU; one GPU here; ``benchmarks/fsdp_scaling.py`` runs it on
several, where each rank's peak memory is reported too)::

    torchrun --standalone --nproc_per_node 1 benchmarks/fsdp_1gpu.py --out fsdp_1gpu.json

It trains ``transmamba-1.5b`` (vocabulary 32000) on random tokens at T=8192 through the
same path as ``zoo train`` under torchrun (zoo.training.Trainer: FSDP2 on every block and
the root, bf16 parameters with fp32 gradient reduction, each block compiled), for
``--warmup`` untimed steps then ``--steps`` timed ones, once per activation-checkpointing
mode, and prints one JSON object: tokens/s over the timed steps and
``torch.cuda.max_memory_allocated``. A mode that runs out of memory is recorded as "OOM".
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.data.tasks import seeded_generator  # noqa: E402
from zoo.overrides import parse_backend_overrides  # noqa: E402
from zoo.training import distributed  # noqa: E402
from zoo.training.runs import build_for_task  # noqa: E402
from zoo.training.trainer import TrainConfig, Trainer  # noqa: E402


class RandomTokens:
    """Uniform random tokens: the model's real vocabulary and length, no corpus needed."""

    name, metric = "random", "loss"

    def __init__(self, vocab_size: int, seq_len: int) -> None:
        self.vocab_size, self.seq_len = vocab_size, seq_len

    def train_batch(self, step: int, micro: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(
            0, self.vocab_size, (batch_size, self.seq_len + 1), generator=seeded_generator(0, "bench", step, micro)
        )
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def eval_batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.train_batch(-1, 0, batch_size)]

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "vocab_size": self.vocab_size, "seq_len": self.seq_len}


def _peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def measure(args: argparse.Namespace, mode: str | int) -> dict[str, Any]:
    row: dict[str, Any] = {"activation_checkpointing": mode}
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = trainer = None
    try:
        task = RandomTokens(args.vocab, args.seq_len)
        torch.manual_seed(0)
        backends = parse_backend_overrides(args.backend)
        model = build_for_task(args.model, task, device=torch.device(args.device), backends=backends)
        config = TrainConfig(
            steps=args.warmup + args.steps,
            batch_size=args.batch_size,
            lr=1e-4,
            warmup_steps=1,
            compile=not args.no_compile,
            precision="bf16" if cuda else "fp32",
            device=args.device,
            activation_checkpointing=mode,
            progress=False,
        )
        trainer = Trainer(model, task, config)
        row["params"] = trainer.n_params
        times = []
        for step in range(args.warmup + args.steps):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            record = trainer.train_step(step)  # reads the loss on the host: the step has ended
            times.append(time.perf_counter() - start)
        timed = times[args.warmup :]
        tokens = args.batch_size * args.seq_len * trainer.dist.world_size * len(timed)
        row.update(
            tokens_per_s=round(tokens / sum(timed)),
            step_s_median=sorted(timed)[len(timed) // 2],
            first_step_s=times[0],
            final_loss=record["loss"],
            peak_memory_gib=_peak_gib(),
        )
        if trainer.dist is not None and trainer.dist.world_size > 1:
            # shards of uneven size make the ranks differ a little: keep every rank's figure
            peaks: list[Any] = [None] * trainer.dist.world_size
            torch.distributed.all_gather_object(peaks, row["peak_memory_gib"])
            row["peak_memory_gib_per_rank"] = peaks
    except torch.OutOfMemoryError:
        row.update(result="OOM", peak_memory_gib=_peak_gib())
    finally:
        del model, trainer  # before emptying the cache: the OOM's tensors go with them
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="transmamba-1.5b")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1, help="sequences per GPU per step")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (the first compiles)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--modes", default="full,none", help="activation checkpointing modes, in order")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="SLOT=NAME",
        help="as zoo train's, e.g. --backend ssm=triton --backend converter=triton (default: the preset's)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke run of the script")
    args = parser.parse_args()
    if not distributed.launched_by_torchrun():
        sys.exit("run me under torchrun: torchrun --standalone --nproc_per_node 1 benchmarks/fsdp_1gpu.py")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA GPU (--device cpu for a smoke run)")
    with distributed.process_group(args.device, timeout_s=1800) as context:
        modes = [int(m) if m.isdigit() else m for m in args.modes.split(",")]
        rows = [measure(args, mode) for mode in modes]
        if context.is_main:
            report = {
                "benchmark": "fsdp_1gpu",
                "model": args.model,
                "vocab_size": args.vocab,
                "seq_len": args.seq_len,
                "batch_size_per_gpu": args.batch_size,
                "world_size": context.world_size,
                "compile": not args.no_compile,
                "backends": args.backend,
                "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "torch": torch.__version__,
                "runs": rows,
            }
            text = json.dumps(report, indent=1)
            print(text)
            if args.out:
                Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
