"""Training throughput: tokens/s, peak memory and MFU of whole training steps, model against model.

One row is one model at one sequence length T. Every row trains on the same number of
tokens per optimizer step (batch = tokens_per_step / T sequences, run as micro-batches
with gradient accumulation when ``micro_batch_size`` is set). A row builds a fresh model
(``zoo.build(..., compile=True)``: the spec's compile options, fullgraph), AdamW from
``make_optimizer`` (fused on CUDA), bf16 autocast on CUDA, the loss in fp32 as the trainer
computes it, gradient clipping at 1.0. ``losses`` picks how: ``logits`` (cross-entropy of the
model's logits) and/or ``chunked`` (the model's own chunked loss, ``forward(targets=...)``,
without the logits); with both, every model and length gets one row each, an A/B in one run.
``warmup`` steps (compilation, autotuning, the allocator) run untimed; then ``steps`` steps
are timed, with CUDA events on a GPU (read after a synchronize) and the wall clock on a CPU.
The tokens are random and made before timing, so no data pipeline is measured.

MFU = model FLOPs per step (``zoo.flops.train_flops_per_token``: 6 N per token for the N
weights in matmuls, plus 3x the attention and SSM terms at this T) / step time / the
accelerator's peak (``peak_tflops``; 989 is the H100/H200 dense bf16 spec).

A row that fails (out of memory, a backend that refuses a shape) records its error and the
run goes on; each row frees its model, optimizer and compiled graphs before the next.
The ``hf-llama`` row is the outside anchor: ``transformers``' LlamaForCausalLM with the
transformer preset's shape (skipped with the reason where transformers is missing).
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import BACKEND_SLOTS
from zoo.training.hf_anchor import llama_like
from zoo.training.throughput_report import row_label

ANCHOR = "hf-llama"
ARCHS = ("transformer", "mamba2", "hybrid", "transmamba")


@dataclass(frozen=True)
class ThroughputConfig:
    """The settings every row shares (saved in the report)."""

    tokens_per_step: int = 32768
    micro_batch_size: int | None = None  # sequences per forward/backward; None: the whole step at once
    steps: int = 10
    warmup: int = 3
    compile: bool = True
    compile_backend: str = "inductor"
    # torch.compile's mode for every row: None (the spec's own; the presets: inductor's default),
    # "reduce-overhead" (CUDA graphs), "max-autotune", ...; not with activation checkpointing
    compile_mode: str | None = None
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    peak_tflops: float | None = None  # None: no MFU
    grad_clip: float | None = 1.0
    lr: float = 1e-4
    budget_s: float | None = None  # stop starting rows after this many seconds
    losses: tuple[str, ...] = ("logits",)  # "logits" and/or "chunked": one row per model, length and loss
    # "none" (the whole model compiled as one graph), or the trainer's per-block wrapping:
    # "selective" / "cheap" / "full" activation checkpointing, each block compiled
    # (distributed.prepare_model)
    activation_checkpointing: str = "none"
    mlp_hidden: str | None = None  # SwiGLU's hidden: None (the preset's), "save" or "recompute"
    ssd_gate: str | None = None  # the SSD mixers' z: None (the preset's), "save" or "recompute"
    ssd_in_proj: str | None = None  # the SSD mixers' in_proj: None (the preset's), "split" or "joined"

    def __post_init__(self) -> None:
        if self.compile_mode is not None and self.activation_checkpointing != "none":
            raise ValueError(
                f"compile_mode={self.compile_mode!r} applies to the whole-model compile; with activation "
                f"checkpointing {self.activation_checkpointing!r} each block is compiled on its own"
            )


def preset_name(model: str, size: str) -> str:
    """``transformer`` at size ``400m`` -> ``transformer-400m``; a full preset name stays."""
    return f"{model}-{size}" if model in ARCHS else model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    """Release the last row's graphs and memory, so rows do not see each other's."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches,
    autocast: torch.dtype | None,
    device: torch.device,
    grad_clip: float | None,
    chunked: bool = False,
) -> torch.Tensor:
    loss_sum = torch.zeros((), device=device)
    for inputs, targets in micro_batches:
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            output = model(inputs, targets=targets) if chunked else model(inputs)
        loss = output if chunked else F.cross_entropy(output.float().flatten(0, 1), targets.flatten())
        (loss / len(micro_batches)).backward()
        loss_sum += loss.detach()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / len(micro_batches)


def _timed_steps(step: Callable[[], torch.Tensor], steps: int, device: torch.device) -> list[float]:
    """Milliseconds of each of ``steps`` calls; CUDA events, read once after a synchronize."""
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append((time.perf_counter() - began) * 1e3)
    return times


def _build(
    label: str, size: str, seq_len: int, config: ThroughputConfig, device: torch.device, backends: dict[str, str]
) -> tuple[nn.Module, nn.Module, int, str]:
    """(model to train, the zoo model whose FLOPs count, parameters, backends used)."""
    import zoo
    from zoo.overrides import spec_with_backends, spec_with_recompute, spec_with_ssd_in_proj

    if label == ANCHOR:
        spec = zoo.resolve_spec(preset_name("transformer", size))
        model = llama_like(spec, seq_len, device)
        if config.compile:
            model = torch.compile(model, backend=config.compile_backend, mode=config.compile_mode)
        flops_model = zoo.build(spec, device="meta")
        return model, flops_model, sum(p.numel() for p in model.parameters()), "transformers sdpa"
    spec = zoo.resolve_spec(preset_name(label, size)).model_dump(mode="json")
    spec, _ = spec_with_backends(spec, backends)
    spec = spec_with_recompute(spec, mlp_hidden=config.mlp_hidden, ssd_gate=config.ssd_gate)
    if config.ssd_in_proj is not None:
        spec = spec_with_ssd_in_proj(spec, config.ssd_in_proj)
    if config.compile:
        spec["compile"] = {**spec["compile"], "backend": config.compile_backend}
        if config.compile_mode is not None:
            spec["compile"]["mode"] = config.compile_mode
    if config.activation_checkpointing == "none":
        model = zoo.build(spec, device=device, compile=config.compile)
    else:  # as the trainer runs it: checkpointing inside each block's compiled region
        from zoo.training.distributed import prepare_model

        model = zoo.build(spec, device=device, compile=False)
        prepare_model(
            model,
            context=None,
            activation_checkpointing=config.activation_checkpointing,
            compile=config.compile,
            compile_backend=config.compile_backend,
        )
    used = sorted(
        {
            f"{slot}={getattr(block.mixer, slot).registry_name}"
            for block in model.blocks
            for slot in BACKEND_SLOTS
            if hasattr(block.mixer, slot)
        }
    )
    return model, model, model.num_parameters(), ", ".join(used)


def measure(
    label: str,
    size: str,
    seq_len: int,
    config: ThroughputConfig,
    device: torch.device,
    backends: dict[str, str] | None = None,
    loss: str = "logits",
) -> dict[str, Any]:
    """One row: ``label`` (an architecture, a preset name or ``hf-llama``) at length ``seq_len``,
    its loss from the logits or chunked in the model (``loss``)."""
    row: dict[str, Any] = {"model": label, "seq_len": seq_len, "tokens_per_step": config.tokens_per_step}
    row["loss_path"] = loss
    if config.tokens_per_step % seq_len:
        row["error"] = f"--tokens-per-step {config.tokens_per_step} is not a multiple of T={seq_len}"
        return row
    batch = config.tokens_per_step // seq_len
    micro = min(config.micro_batch_size or batch, batch)
    if batch % micro:
        row["error"] = f"batch {batch} (= tokens per step / T) is not a multiple of --micro-batch-size {micro}"
        return row
    row.update(batch_size=batch, micro_batch_size=micro, grad_accum=batch // micro)
    precision = config.precision if config.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    autocast = torch.bfloat16 if precision == "bf16" else None
    row.update(precision=precision, compiled=config.compile)
    row["activation_checkpointing"] = "none" if label == ANCHOR else config.activation_checkpointing
    row["mlp_hidden"] = "save" if label == ANCHOR else (config.mlp_hidden or "preset")
    if label == ANCHOR and loss != "logits":
        row["skipped"] = f"the {ANCHOR} anchor computes its loss from logits only"
        return row
    if label == ANCHOR and importlib.util.find_spec("transformers") is None:
        row["skipped"] = "transformers is not installed here (pip install transformers for the Llama anchor row)"
        return row
    _free(device)
    try:
        model, flops_model, n_params, used = _build(label, size, seq_len, config, device, backends or {})
        from zoo.flops import train_flops_per_token
        from zoo.training.optim import make_optimizer

        row.update(params=n_params, backends=used)
        has_ssd = label != ANCHOR and any(hasattr(block.mixer, "ssd") for block in flops_model.blocks)
        row["ssd_gate"] = (config.ssd_gate or "preset") if has_ssd else "-"
        row["ssd_in_proj"] = (config.ssd_in_proj or "preset") if has_ssd else "-"
        if label == ANCHOR or config.activation_checkpointing == "none":
            mode = config.compile_mode if label == ANCHOR else flops_model.spec.compile.mode
        else:  # the trainer's per-block compile (prepare_model) takes no mode
            mode = None
        row["compile_mode"] = (mode or "default") if config.compile else "-"
        flops_per_token = train_flops_per_token(flops_model, seq_len)
        optimizer = make_optimizer(model, lr=config.lr, weight_decay=0.1)
        row["fused_adamw"] = bool(optimizer.defaults.get("fused"))
        vocab = flops_model.spec.vocab_size
        generator = torch.Generator(device="cpu").manual_seed(0)
        tokens = torch.randint(0, vocab, (batch, seq_len + 1), generator=generator).to(device)
        micro_batches = [
            (tokens[i : i + micro, :-1].contiguous(), tokens[i : i + micro, 1:].contiguous())
            for i in range(0, batch, micro)
        ]

        def step() -> torch.Tensor:
            return _training_step(
                model, optimizer, micro_batches, autocast, device, config.grad_clip, chunked=loss == "chunked"
            )

        began = time.perf_counter()
        for _ in range(config.warmup):
            loss = step()
        _sync(device)
        row["warmup_s"] = round(time.perf_counter() - began, 2)
        times = _timed_steps(step, config.steps, device)
        loss = step()  # one more, untimed, for the loss (reading it syncs)
        total_s = sum(times) / 1e3
        tokens_per_s = config.tokens_per_step * config.steps / total_s
        row.update(
            tokens_per_s=round(tokens_per_s, 1),
            step_ms_median=round(statistics.median(times), 3),
            step_ms_min=round(min(times), 3),
            step_ms_max=round(max(times), 3),
            train_flops_per_token=flops_per_token,
            model_tflops=float(f"{flops_per_token * tokens_per_s / 1e12:.4g}"),
            mfu=float(f"{flops_per_token * tokens_per_s / (config.peak_tflops * 1e12):.4g}")
            if config.peak_tflops
            else None,
            loss=round(float(loss), 4),
        )
        if device.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    except Exception as exc:  # a failing row (out of memory included) is a result; the run goes on
        row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        if isinstance(exc, torch.OutOfMemoryError) and device.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    finally:
        model = flops_model = optimizer = micro_batches = tokens = step = None  # noqa: F841 - drop references
        _free(device)
    return row


def run_throughput(
    models: Sequence[str],
    seq_lens: Sequence[int],
    *,
    size: str = "400m",
    device: torch.device | str = "cpu",
    config: ThroughputConfig | None = None,
    backends: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows for every model at every length and loss, with ``time_vs_transformer`` (the
    transformer's tokens/s at that T with the same loss over this row's: relative training time)."""
    config = config or ThroughputConfig()
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast (the SSD's) use TF32
        torch.backends.cudnn.allow_tf32 = True
    began = time.perf_counter()
    rows = []
    for seq_len in seq_lens:  # length by length, so a budget that runs out leaves whole comparisons
        for label in models:
            for loss in config.losses:
                if config.budget_s is not None and time.perf_counter() - began > config.budget_s:
                    skipped = f"--budget-s {config.budget_s:g} spent"
                    rows.append({"model": label, "seq_len": seq_len, "loss_path": loss, "skipped": skipped})
                    continue
                row = measure(label, size, seq_len, config, device, backends, loss=loss)
                rows.append(row)
                if log is not None:
                    log(_summary(row))
    reference = {
        (row["seq_len"], row["loss_path"]): row["tokens_per_s"]
        for row in rows
        if row["model"] == "transformer" and row.get("tokens_per_s")
    }
    for row in rows:
        key = (row["seq_len"], row["loss_path"])
        if row.get("tokens_per_s") and key in reference:
            row["time_vs_transformer"] = round(reference[key] / row["tokens_per_s"], 3)
    return rows


def _summary(row: dict[str, Any]) -> str:
    head = f"{row_label(row)} T={row['seq_len']}"
    if "tokens_per_s" in row:
        mfu = f", MFU {100 * row['mfu']:.1f}%" if row.get("mfu") is not None else ""
        memory = f", peak {row['peak_memory_gib']} GiB" if "peak_memory_gib" in row else ""
        return f"{head}: {row['tokens_per_s']:,.0f} tokens/s{mfu}{memory} (warm-up {row['warmup_s']} s)"
    return f"{head}: {row.get('error') or row.get('skipped')}"
