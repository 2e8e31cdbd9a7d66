"""benchmarks/fsdp_scaling.py: the efficiency and loss-agreement arithmetic, the tables, and a
killed rank at tiny scale (gloo, CPU)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsdp_scaling_report import (  # noqa: E402
    loss_agreement,
    per_gpu,
    report_name,
    scaling_efficiency,
    summary_markdown,
)


def test_per_gpu_throughput_and_scaling_efficiency() -> None:
    assert per_gpu(180_000, 2) == 90_000
    # 2 GPUs at 180K tokens/s in all, 1 GPU at 100K: each GPU runs at 90% of the lone one
    assert scaling_efficiency(100_000, 180_000, 2) == pytest.approx(0.9)
    assert scaling_efficiency(100_000, 100_000, 1) == 1.0
    with pytest.raises(ValueError, match="world_size"):
        per_gpu(1.0, 0)
    with pytest.raises(ValueError, match="no throughput"):
        scaling_efficiency(0.0, 1.0, 2)


def test_loss_agreement_names_the_worst_step_and_checks_the_tolerance() -> None:
    reference = [5.0, 4.0, 3.0, 2.5]
    other = [5.0, 4.01, 2.97, 2.5]
    agreement = loss_agreement(reference, other, tolerance=0.02, first_step=26)
    assert agreement["max_abs_diff"] == pytest.approx(0.03)
    assert agreement["max_at_step"] == 28  # the third entry, counted from step 26
    assert agreement["steps"] == [26, 29]
    assert agreement["first_step_abs_diff"] == 0.0
    assert agreement["mean_abs_diff"] == pytest.approx(0.01)
    assert agreement["max_rel_diff"] == pytest.approx(0.01)
    assert agreement["within_tolerance"] is False
    assert loss_agreement(reference, other, tolerance=0.05)["within_tolerance"] is True


def test_loss_agreement_refuses_nan_and_unequal_curves() -> None:
    agreement = loss_agreement([1.0, 2.0], [1.0, math.nan], tolerance=1.0)
    assert math.isnan(agreement["max_abs_diff"]) and agreement["max_at_step"] == 2
    assert agreement["within_tolerance"] is False
    with pytest.raises(ValueError, match="differ in length"):
        loss_agreement([1.0], [1.0, 2.0], tolerance=1.0)
    with pytest.raises(ValueError, match="no steps"):
        loss_agreement([], [], tolerance=1.0)


def _write(folder: Path, name: str, report: dict) -> None:
    (folder / name).write_text(json.dumps(report))


def test_summary_tables_from_reports(tmp_path) -> None:
    tag = "h200x2"
    run = {"result": "ok", "tokens_per_s": 100_000, "tokens_per_s_per_gpu": 100_000, "peak_memory_gib": 40.5}
    two = {**run, "world_size": 2, "tokens_per_s": 180_000, "tokens_per_s_per_gpu": 90_000, "peak_memory_gib": 30.25}
    _write(
        tmp_path,
        report_name(tag, "throughput", "transmamba-400m"),
        {
            "kind": "throughput",
            "preset": "transmamba-400m",
            "activation_checkpointing": "none",
            "seq_len": 8192,
            "batch_size_per_gpu": 4,
            "runs": [{**run, "world_size": 1, "first_step_s": 61.0}, {**two, "first_step_s": 20.0}],
            "scaling": {"2": {"efficiency": 0.9}},
        },
    )
    _write(
        tmp_path,
        report_name(tag, "throughput", "transmamba-1.5b", "acfull"),
        {
            "kind": "throughput",
            "preset": "transmamba-1.5b",
            "activation_checkpointing": "full",
            "seq_len": 8192,
            "batch_size_per_gpu": 1,
            "runs": [{"world_size": 2, "result": "OOM", "peak_memory_gib": 139.0}],
            "scaling": {},
        },
    )
    agreement = loss_agreement([5.0, 4.0], [5.001, 4.01], tolerance=0.02)
    _write(
        tmp_path,
        report_name(tag, "curve"),
        {
            "kind": "curve",
            "preset": "transmamba-400m",
            "seq_len": 8192,
            "same_data": True,
            "two_gpu": {"batch_size": 1},
            "one_gpu": {"batch_size": 2, "grad_accum": 1},
            "agreement": agreement,
        },
    )
    _write(tmp_path, report_name("cpu", "curve"), {"kind": "curve"})  # another tag: left out
    text = summary_markdown(tmp_path, tag)
    rows = [line for line in text.splitlines() if line.startswith("| transmamba") or line.startswith("| 2 GPUs")]
    assert rows[0].startswith("| transmamba-1.5b | full | 8192 | 1 | not run | OOM | - | not run | OOM |")
    assert rows[1] == ("| transmamba-400m | none | 8192 | 4 | 100,000 | 90,000 | 0.900 | 40.50 | 30.25 | 61.0 / 20.0 |")
    assert rows[2] == (
        "| 2 GPUs x batch 1 vs 1 GPU x batch 2 x accum 1 | transmamba-400m | 8192 | 1-2 "
        "| 0.01 (step 2) | 0.001 | 0.02 | yes |"
    )
    assert "no fsdp-scaling-other-" in summary_markdown(tmp_path, "other")


def test_kill_table_prefers_zoo_s_line_and_names_the_signal() -> None:
    from fsdp_scaling_report import kill_table

    base = {"fault": "SIGKILL", "killed_after_step": 5, "dist_timeout_s": 30.0, "one_line_error": False}
    watchdog = "[rank0]:[E] Watchdog caught collective operation timeout: WorkNCCL(OpType=ALLREDUCE) | 30012 ms"
    nccl = {**base, "backend": "nccl", "survivor": {"exit_s": 31.4, "rc": -6, "signal": "SIGABRT"}}
    nccl["survivor"]["error_lines"] = [watchdog, "terminate called after throwing ..."]
    gloo = {**base, "backend": "gloo", "one_line_error": True, "survivor": {"exit_s": 0.4, "rc": 2}}
    gloo["survivor"]["error_lines"] = ["[W] socket error", "zoo train: error: rank 0 of 2: a collective failed (x)"]
    rows = kill_table([nccl, gloo]).splitlines()[2:]
    assert rows[0].startswith("| SIGKILL after step 5 | nccl | 30 | 31.4 | -6 (SIGABRT) | no | `[rank0]:[E] Watchdog")
    assert "\\| 30012 ms`" in rows[0]  # a | inside the message does not split the cell
    assert rows[1].endswith("| 0.4 | 2 | yes | `zoo train: error: rank 0 of 2: a collective failed (x)` |")


@pytest.mark.slow
def test_a_killed_rank_is_timed_and_reported(tmp_path) -> None:
    """The kill subcommand end to end on gloo: rank 0 leaves with zoo's one-line error."""
    from fsdp_scaling import main

    results = tmp_path / "results"
    main(
        ["kill", "--device", "cpu", "--preset", "transmamba-tiny", "--seq-len", "32", "--dist-timeout", "8"]
        + ["--kill-after-steps", "2", "--start-timeout", "120", "--results-dir", str(results)]
        + ["--work-dir", str(tmp_path / "work")]
    )
    report = json.loads((results / report_name("cpu", "kill", "kill")).read_text())
    assert report["fault"] == "SIGKILL" and report["backend"] == "gloo"
    assert report["killed_after_step"] >= 2
    survivor = report["survivor"]
    assert survivor["rc"] == 2, survivor["log_tail"]
    assert report["one_line_error"] and "rank 0 of 2: a collective failed" in survivor["error_lines"][0]
    assert report["within_timeout"] and survivor["exit_s"] < 8 + 15
    assert "SIGKILL after step" in summary_markdown(results, "cpu")
