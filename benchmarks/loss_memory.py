"""Peak memory and time of a training step with the loss from logits or chunked (TrainConfig.loss).

Each loss runs in its own process (a fresh allocator, a fresh high-water mark). A process
builds a preset with its vocabulary and width replaced (default: transmamba-tiny, 2 layers,
d_model 256, vocab 32000, tied head), AdamW, and ``--batch x --seq-len`` random tokens, then
runs the throughput benchmark's step (zoo.training.throughput) ``--steps`` times, eagerly in
fp32 on the CPU or bf16-autocast on CUDA. It reports the median step time and the peak memory
the steps added: on the CPU the peak RSS (``getrusage``) less the RSS before the first step,
on CUDA ``max_memory_allocated`` less the allocation before it.

    python benchmarks/loss_memory.py                         # CPU: 8192 tokens, vocab 32000
    python benchmarks/loss_memory.py --device cuda --preset transformer-400m --keep-width \\
        --layers 0 --batch 4 --seq-len 8192                  # GPU: all of transformer-400m, 32K tokens
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import schedules  # noqa: F401  (registers the schedules where the entry points are not installed)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _one(args: argparse.Namespace) -> dict:
    import zoo
    from zoo.training.optim import make_optimizer
    from zoo.training.throughput import _training_step

    torch.manual_seed(0)
    device = torch.device(args.device)
    spec = zoo.resolve_spec(args.preset).model_dump(mode="json")
    spec["vocab_size"] = args.vocab
    if not args.keep_width:
        spec["d_model"] = args.d_model
    if args.layers:
        spec["layers"] = spec["layers"][: args.layers]
    model = zoo.build(spec, device=device, compile=False)
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), generator=generator).to(device)
    batches = [(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())]
    autocast = torch.bfloat16 if device.type == "cuda" else None
    chunked = args.one == "chunked"
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = _rss_bytes()
    times, losses = [], []
    for _ in range(args.steps):
        began = time.perf_counter()
        loss = _training_step(model, optimizer, batches, autocast, device, 1.0, chunked=chunked)
        losses.append(float(loss))  # reading it syncs
        times.append(time.perf_counter() - began)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {
        "loss_path": args.one,
        "params": model.num_parameters(),
        "tokens": args.batch * args.seq_len,
        "vocab": args.vocab,
        "step_s_median": round(statistics.median(times), 3),
        "step_s": [round(t, 3) for t in times],
        "peak_added_mib": round(peak / 2**20, 1),
        "losses": [round(v, 5) for v in losses],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="transmamba-tiny")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--keep-width", action="store_true", help="keep the preset's d_model")
    parser.add_argument("--layers", type=int, default=2, help="keep the first N layers (0: all)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--loss", nargs="+", default=["logits", "chunked"], choices=["logits", "chunked"])
    parser.add_argument("--one", choices=["logits", "chunked"], help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args)))
        return 0
    child = [a for a in (argv if argv is not None else sys.argv[1:])]
    for loss in args.loss:
        result = subprocess.run([sys.executable, __file__, *child, "--one", loss], capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return result.returncode
        print(result.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
