"""The arithmetic and the tables of ``benchmarks/fsdp_scaling.py``: no process is started here.

    python benchmarks/fsdp_scaling_report.py [RESULTS_DIR] [--tag h200x2]

prints the markdown tables of docs/training.md from the ``fsdp-scaling-TAG-*.json`` reports
in RESULTS_DIR (default ``benchmarks/results``).

Throughput is per GPU: ``tokens_per_s`` of a run counts the tokens of every rank, so one GPU
of a W-process run trains ``tokens_per_s / W``; the scaling efficiency at W is that divided by
the one-process run's tokens/s at the same per-GPU batch (1.0: perfect linear scaling).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PREFIX = "fsdp-scaling"


def report_name(tag: str, kind: str, *parts: str) -> str:
    """``fsdp-scaling-TAG-KIND[-PART...].json``: the file one subcommand writes."""
    return "-".join([PREFIX, tag, kind, *[p for p in parts if p]]) + ".json"


def per_gpu(tokens_per_s: float, world_size: int) -> float:
    """One GPU's share of a run's tokens/s (every rank trains the same per-GPU batch)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return tokens_per_s / world_size


def scaling_efficiency(tokens_per_s_one: float, tokens_per_s_total: float, world_size: int) -> float:
    """Tokens/s per GPU at ``world_size`` over tokens/s of one process at the same per-GPU batch."""
    if tokens_per_s_one <= 0:
        raise ValueError(f"the one-process run has no throughput ({tokens_per_s_one})")
    return per_gpu(tokens_per_s_total, world_size) / tokens_per_s_one


def loss_agreement(
    reference: Sequence[float], other: Sequence[float], tolerance: float, first_step: int = 1
) -> dict[str, Any]:
    """Per-step agreement of two loss curves: the max absolute difference (and its step),
    the mean one, the first step's, and whether the max is within ``tolerance``.

    ``first_step`` is the step number of the curves' first entries (1 for a run from the start)."""
    if len(reference) != len(other):
        raise ValueError(f"the curves differ in length: {len(reference)} vs {len(other)} steps")
    if not reference:
        raise ValueError("no steps to compare")
    diffs = [abs(a - b) for a, b in zip(reference, other, strict=True)]
    if any(math.isnan(d) for d in diffs):
        worst, at = math.nan, first_step + next(i for i, d in enumerate(diffs) if math.isnan(d))
    else:
        index = max(range(len(diffs)), key=diffs.__getitem__)
        worst, at = diffs[index], first_step + index
    return {
        "metric": "max over steps of |loss_a - loss_b|",
        "steps": [first_step, first_step + len(diffs) - 1],
        "max_abs_diff": worst,
        "max_at_step": at,
        "mean_abs_diff": sum(diffs) / len(diffs),
        "first_step_abs_diff": diffs[0],
        "max_rel_diff": max(d / abs(r) if r else math.inf for d, r in zip(diffs, reference, strict=True)),
        "tolerance": tolerance,
        "within_tolerance": bool(worst <= tolerance),  # NaN compares False: not within
    }


# ---------------------------------------------------------------- tables


def load_reports(results_dir: str | Path, tag: str) -> dict[str, list[dict[str, Any]]]:
    """The reports of one tag, by kind (throughput, curve, resume, kill), in file-name order."""
    reports: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(results_dir).glob(f"{PREFIX}-{tag}-*.json")):
        report = json.loads(path.read_text())
        report.setdefault("file", path.name)
        reports.setdefault(report.get("kind", "?"), []).append(report)
    return reports


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def _run(report: dict[str, Any], world_size: int) -> dict[str, Any] | None:
    return next((r for r in report.get("runs", []) if r.get("world_size") == world_size), None)


def _result(run: dict[str, Any] | None) -> str | None:
    """None for a run that measured; else why not (OOM, timeout, failed, not run)."""
    if run is None:
        return "not run"
    return None if run.get("result", "ok") == "ok" else str(run["result"])


def throughput_table(reports: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| model | act. ckpt | T | batch/GPU | tok/s, 1 GPU | tok/s per GPU, 2 GPUs | scaling efficiency "
        "| peak GiB, 1 GPU | peak GiB per GPU, 2 GPUs | first step s (1 / 2 GPUs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        one, two = _run(report, 1), _run(report, 2)
        cells = []
        for run in (one, two):
            why = _result(run)
            cells.append(why if why else _num(run["tokens_per_s_per_gpu"]))
        efficiency = report.get("scaling", {}).get("2", {}).get("efficiency")
        peaks = [_result(r) or _num(r.get("peak_memory_gib"), 2) for r in (one, two)]
        firsts = " / ".join(_num(r.get("first_step_s"), 1) if r and not _result(r) else "-" for r in (one, two))
        lines.append(
            f"| {report['preset']} | {report['activation_checkpointing']} | {report['seq_len']} "
            f"| {report['batch_size_per_gpu']} | {cells[0]} | {cells[1]} | {_num(efficiency, 3)} "
            f"| {peaks[0]} | {peaks[1]} | {firsts} |"
        )
    return "\n".join(lines)


def _agreement_cells(agreement: dict[str, Any] | None) -> str:
    if not agreement:
        return "- | - | - | -"
    verdict = "yes" if agreement["within_tolerance"] else "**no**"
    return (
        f"{agreement['max_abs_diff']:.4g} (step {agreement['max_at_step']}) | {agreement['first_step_abs_diff']:.3g} "
        f"| {agreement['tolerance']:g} | {verdict}"
    )


def loss_table(curves: Sequence[dict[str, Any]], resumes: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| comparison | model | T | steps | max abs loss diff (at step) | step-1 diff | tolerance | within |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for curve in curves:
        one, many = curve["one_gpu"], curve["two_gpu"]
        what = (
            f"{many.get('world_size', 2)} GPUs x batch {many['batch_size']} vs 1 GPU x batch {one['batch_size']}"
            f" x accum {one['grad_accum']}"
            + (f" ({curve['one_launcher']})" if curve.get("one_launcher") else "")
            + ("" if curve["same_data"] else " (different batches)")
        )
        steps = curve["agreement"]["steps"] if curve.get("agreement") else ["-", "-"]
        lines.append(
            f"| {what} | {curve['preset']} | {curve['seq_len']} | {steps[0]}-{steps[1]} "
            f"| {_agreement_cells(curve.get('agreement'))} |"
        )
    for resume in resumes:
        steps = resume["agreement"]["steps"] if resume.get("agreement") else ["-", "-"]
        lines.append(
            f"| saved on {resume['saved_world_size']} GPUs at step {resume['from_step']}, resumed on "
            f"{resume['resumed_world_size']} ({resume.get('one_launcher', '-')}) "
            f"vs the {resume['saved_world_size']}-GPU run | {resume['preset']} "
            f"| {resume['seq_len']} | {steps[0]}-{steps[1]} | {_agreement_cells(resume.get('agreement'))} |"
        )
    return "\n".join(lines)


def kill_table(kills: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| fault on rank 1 | backend | --dist-timeout s | survivor exit s | exit code | one-line error | message |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for kill in kills:
        survivor = kill["survivor"]
        found = survivor.get("error_lines") or ["(none)"]
        zoo_lines = [line for line in found if line.startswith("zoo train: error:")]
        message = (zoo_lines or found)[0].replace("|", "\\|")[:160]
        exit_code = f"{survivor.get('rc')}" + (f" ({survivor['signal']})" if "signal" in survivor else "")
        lines.append(
            f"| {kill['fault']} after step {kill.get('killed_after_step', '-')} | {kill['backend']} "
            f"| {kill['dist_timeout_s']:g} | {_num(survivor.get('exit_s'), 1)} | {exit_code} "
            f"| {'yes' if kill.get('one_line_error') else 'no'} | `{message}` |"
        )
    return "\n".join(lines)


def summary_markdown(results_dir: str | Path, tag: str) -> str:
    reports = load_reports(results_dir, tag)
    if not reports:
        return f"no {PREFIX}-{tag}-*.json in {results_dir}"
    parts = []
    if reports.get("throughput"):
        parts.append(throughput_table(reports["throughput"]))
    if reports.get("curve") or reports.get("resume"):
        parts.append(loss_table(reports.get("curve", []), reports.get("resume", [])))
    if reports.get("kill"):
        parts.append(kill_table(reports["kill"]))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--tag", default="h200x2", help="the machine part of the file names (default h200x2)")
    args = parser.parse_args(argv)
    print(summary_markdown(args.results_dir, args.tag))


if __name__ == "__main__":
    main()
