"""The demo: train a small TransMamba on the built-in corpus in minutes on a CPU, compare its
validation loss with the untrained model's, plot the curves, and sample text from it."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from zoo.checkpoint import latest_checkpoint
from zoo.data.tasks import TextTask, text_task
from zoo.errors import ZooError
from zoo.training.runs import build_for_task, plot_panels, smooth
from zoo.training.trainer import TrainConfig, Trainer, count_params


@dataclass
class DemoResult:
    preset: str
    params: int
    steps: int
    seq_len: int
    batch_size: int
    train_tokens: int
    tokens_per_s: float
    uniform_loss: float  # ln(vocab): a model that knows nothing
    baseline_loss: float  # the same model before training
    final_loss: float  # validation loss after training
    final_ppl: float
    elapsed_s: float
    plot: str | None
    checkpoint: str | None
    prompt: str
    sample: str
    sampler: str  # "zoo.inference.generate" or "full-forward loop"


@torch.no_grad()
def sample_full_forward(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 0.8,
    top_k: int | None = 40,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Sample by re-running the whole sequence each token (O(T^2), fine for a demo)."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        logits = model(ids)[0, -1].float() / max(temperature, 1e-5)
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        next_id = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)
        ids = torch.cat([ids, next_id[None]], dim=1)
    return ids[0, len(prompt_ids) :].tolist()


def sample_text(
    model: torch.nn.Module, task: TextTask, prompt: str, max_new_tokens: int, *, seed: int = 0
) -> tuple[str, str]:
    """Text continuing ``prompt``; uses ``zoo.inference.generate`` when it exists."""
    model.eval()
    prompt_ids = task.tokenizer.encode(prompt)
    try:
        from zoo.inference import generate
    except ImportError:
        generate = None
    fallback = "full-forward loop"
    if generate is not None:
        try:
            # generate returns only the new tokens, [B, max_new_tokens]
            out = generate(
                model, torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, temperature=0.8, top_k=40, seed=seed
            )
            ids = out[0].tolist()
            return task.tokenizer.decode(ids), "zoo.inference.generate"
        except Exception as exc:  # noqa: BLE001 - reported in the result, never hidden
            fallback = f"full-forward loop (zoo.inference.generate failed: {type(exc).__name__}: {exc})"
    generator = torch.Generator().manual_seed(seed)
    ids = sample_full_forward(model, prompt_ids, max_new_tokens, generator=generator)
    return task.tokenizer.decode(ids), fallback


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    preset: str = "transmamba-tiny",
    minutes: float = 5.0,
    steps: int | None = None,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    data: str | None = None,
    compile: bool = True,
    device: str = "auto",
    seed: int = 0,
    prompt: str = "The ",
    sample_tokens: int = 300,
    plot: bool = True,
    progress: bool = True,
    stream: TextIO | None = None,
) -> DemoResult:
    """Train ``preset`` on the built-in corpus (or ``data``) so that the whole demo takes about
    ``minutes`` of wall clock (or for exactly ``steps`` steps), then report and sample.

    Writes ``out_dir/{metrics.jsonl, loss.png, demo.json, checkpoints/}``.
    """
    stream = stream or sys.stdout
    started = time.perf_counter()
    out = Path(out_dir)
    replacing = latest_checkpoint(out) is not None  # a demo replays into its own directory, and only there
    if replacing and not (out / "demo.json").exists():
        raise ZooError(f"--out {out} holds a run that is not a demo's (no demo.json); choose another --out")

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    torch.manual_seed(seed)
    task = text_task(data, seq_len=seq_len, seed=seed, eval_windows=32)
    model = build_for_task(preset, task)
    n_params = count_params(model)
    say(
        f"zoo demo: {preset}, {n_params:,} parameters, corpus {task.corpus_name!r} "
        f"({task.train_tokens.numel():,} train / {task.val_tokens.numel():,} validation bytes)"
    )
    evals = 8
    config = TrainConfig(
        steps=steps or 100_000,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=max(10, (steps or 0) // 20),
        min_lr_ratio=0.1,
        weight_decay=0.1,
        seed=seed,
        compile=compile,
        device=device,
        progress=progress,
        eval_every=max(1, steps // evals) if steps else 0,
        keep_last=1,
    )
    trainer = Trainer(model, task, config, out_dir=out)
    eval_start = time.perf_counter()
    baseline = trainer.evaluate()["eval_loss"]
    eval_cost = time.perf_counter() - eval_start
    uniform = math.log(task.vocab_size)
    say(f"untrained validation loss {baseline:.3f} (uniform guess ln {task.vocab_size} = {uniform:.3f})")
    budget = None
    if steps is None:
        # Leave room for the final sampling (about one eval's worth of forwards per 10 tokens).
        reserve = eval_cost * (1 + sample_tokens / 200)
        budget = minutes * 60 - (time.perf_counter() - started) - reserve
        say(f"training for about {budget:.0f} s")
    if replacing:
        say(f"replacing the earlier demo in {out}")
    result = trainer.fit(time_budget_s=budget, budget_evals=evals, eval_cost_s=eval_cost, overwrite=True)
    final = result.eval["eval_loss"]
    say(
        f"validation loss: untrained {baseline:.3f} -> trained {final:.3f} "
        f"(perplexity {math.exp(baseline):.1f} -> {math.exp(final):.2f}) after {result.steps} steps, "
        f"{result.tokens_per_s:,.0f} tokens/s"
    )

    plot_path = None
    if plot:
        train_curve = smooth([(h["step"], h["loss"]) for h in result.history])
        val_curve = [(0, baseline)] + [(h["step"], h["eval_loss"]) for h in result.history if "eval_loss" in h]
        plot_path = plot_panels(
            [
                (
                    f"{preset} on {task.corpus_name} (bytes)",
                    "loss (nats/byte)",
                    {"train (EMA)": train_curve, "validation": val_curve},
                )
            ],
            out / "loss.png",
            baselines={f"uniform ln {task.vocab_size}": uniform},
        )
        say(f"loss plot: {plot_path}")

    sample, sampler = sample_text(trainer.model, task, prompt, sample_tokens, seed=seed)
    say(f"sample ({sampler}, temperature 0.8, top-k 40):\n{prompt}{sample}")
    checkpoint = max((out / "checkpoints").glob("step-*"), default=None)
    demo = DemoResult(
        preset=preset,
        params=n_params,
        steps=result.steps,
        seq_len=seq_len,
        batch_size=batch_size,
        train_tokens=result.steps * batch_size * seq_len,
        tokens_per_s=result.tokens_per_s,
        uniform_loss=uniform,
        baseline_loss=baseline,
        final_loss=final,
        final_ppl=math.exp(final),
        elapsed_s=time.perf_counter() - started,
        plot=str(plot_path) if plot_path else None,
        checkpoint=str(checkpoint) if checkpoint else None,
        prompt=prompt,
        sample=sample,
        sampler=sampler,
    )
    (out / "demo.json").write_text(json.dumps(asdict(demo), indent=1))
    say(f"done in {demo.elapsed_s:.0f} s; results in {out / 'demo.json'}")
    return demo


def summary(result: DemoResult) -> dict[str, Any]:
    return asdict(result)
