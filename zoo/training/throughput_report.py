"""The training-throughput report: a row's label, the markdown table, the environment the
figures depend on, ``train_throughput.json`` and the plot (tokens/s, MFU and peak memory
against T). ``zoo.training.throughput`` measures the rows.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch


def row_label(row: dict[str, Any]) -> str:
    """The model's name, with `` (chunked loss)`` for a row whose loss is not from the logits,
    `` (MLP hidden recomputed)`` for a row run with ``--mlp-hidden recompute``, `` (z recomputed)``
    for an SSD row run with ``--ssd-gate recompute``, `` (in_proj joined)`` for one run with
    ``--ssd-in-proj joined``, `` (reduce-overhead)`` and so on for a row compiled in a torch.compile
    mode other than the default, and `` (selective AC)``, `` (cheap AC)`` and so on for a row with
    activation checkpointing."""
    label = row["model"] if row.get("loss_path", "logits") == "logits" else f"{row['model']} ({row['loss_path']} loss)"
    if row.get("mlp_hidden") == "recompute":
        label = f"{label} (MLP hidden recomputed)"
    if row.get("ssd_gate") == "recompute":
        label = f"{label} (z recomputed)"
    if row.get("ssd_in_proj") == "joined":
        label = f"{label} (in_proj joined)"
    if row.get("compile_mode") not in (None, "default", "-"):
        label = f"{label} ({row['compile_mode']})"
    ac = row.get("activation_checkpointing", "none")
    return label if ac == "none" else f"{label} ({ac} AC)"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per row; failed and skipped rows say why."""
    lines = [
        "| model | T | batch x accum | params | tokens/s | time vs transformer | step ms (median) | "
        "peak GiB | model TFLOP/s | MFU | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:

        def cell(key: str, fmt: str = "{}", row: dict[str, Any] = row) -> str:
            return fmt.format(row[key]) if row.get(key) is not None else "-"

        shape = f"{row['batch_size'] // row['grad_accum']} x {row['grad_accum']}" if "grad_accum" in row else "-"
        params = f"{row['params'] / 1e6:.1f}M" if row.get("params") else "-"
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "-"
        note = row.get("error") or row.get("skipped") or row.get("backends", "")
        lines.append(
            f"| {row_label(row)} | {row['seq_len']} | {shape} | {params} | {cell('tokens_per_s', '{:,.0f}')} | "
            f"{cell('time_vs_transformer', '{:.2f}')} | {cell('step_ms_median', '{:.1f}')} | "
            f"{cell('peak_memory_gib')} | {cell('model_tflops')} | {mfu} | {note} |"
        )
    return "\n".join(lines)


def environment(device: torch.device, command: str, config: Any, backends: dict[str, str], size: str) -> dict[str, Any]:
    """What the numbers depend on besides the rows: date, device, versions, settings (``config``
    a ``ThroughputConfig``)."""
    import datetime
    import platform

    versions = {"torch": torch.__version__}
    for package in ("triton", "transformers"):
        if importlib.util.find_spec(package) is not None:
            versions[package] = getattr(importlib.import_module(package), "__version__", "?")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": name,
        "device_type": device.type,
        "versions": versions,
        "command": command,
        "size": size,
        "backends": backends,
        "tf32": device.type == "cuda",
        "config": asdict(config),
        "cpu_threads": torch.get_num_threads(),
    }


def write_report(
    rows: list[dict[str, Any]], env: dict[str, Any], out_dir: str | Path, *, plot: bool = True
) -> list[Path]:
    """``train_throughput.json`` (environment + rows) and ``train_throughput.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_throughput.json"
    path.write_text(json.dumps({**env, "rows": rows}, indent=1) + "\n")
    written = [path]
    if plot:
        written.append(plot_rows(rows, out / "train_throughput.png", title=f"{env['device']}, {env['size']}"))
    return written


def plot_rows(rows: list[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Tokens/s, MFU and peak memory against T, one line per model (needs matplotlib)."""
    from zoo.errors import ZooError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ZooError("the plot needs matplotlib: pip install 'zoo[plot]' (or --no-plot)") from exc
    panels = [("tokens_per_s", "tokens / s"), ("mfu", "MFU"), ("peak_memory_gib", "peak memory (GiB)")]
    panels = [(key, label) for key, label in panels if any(row.get(key) is not None for row in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), dpi=110, squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        for model in dict.fromkeys(row_label(row) for row in rows):
            points = sorted(
                (row["seq_len"], row[key]) for row in rows if row_label(row) == model and row.get(key) is not None
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=model)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length T (same tokens per step)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"training throughput{': ' + title if title else ''}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
