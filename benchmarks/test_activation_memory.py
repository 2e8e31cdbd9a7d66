"""The activation-memory benchmark end to end at the tiny size: its rows, JSON and markdown."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import activation_memory  # noqa: E402


@pytest.mark.slow
def test_rows_for_the_norm_output_and_what_each_keeps(tmp_path) -> None:
    args = ["--models", "mamba2", "transformer", "--size", "tiny", "--batch", "2", "--seq-len", "64"]
    args += ["--states", "save", "--norm-output", "save", "recompute", "--ac", "none", "cheap", "selective"]
    assert activation_memory.main([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "activation_memory.json").read_text())["rows"]
    keys = [(row["model"], row["norm_output"], row["ac"]) for row in rows]
    # selective recomputes the norm anyway: no norm-output variants under it (cheap has them)
    assert keys == [
        ("mamba2-tiny", "save", "none"),
        ("mamba2-tiny", "recompute", "none"),
        ("mamba2-tiny", "save", "cheap"),
        ("mamba2-tiny", "recompute", "cheap"),
        ("mamba2-tiny", "save", "selective"),
        ("transformer-tiny", "-", "none"),
        ("transformer-tiny", "-", "cheap"),
        ("transformer-tiny", "-", "selective"),
    ]
    saved = {key: row["saved_bytes"] for key, row in zip(keys, rows, strict=True)}
    assert saved["mamba2-tiny", "recompute", "none"] < saved["mamba2-tiny", "save", "none"]
    assert saved["mamba2-tiny", "save", "selective"] < saved["mamba2-tiny", "recompute", "none"]
    assert saved["mamba2-tiny", "save", "cheap"] < saved["mamba2-tiny", "save", "none"]  # the Triton conv
    assert (
        "| mamba2-tiny | save | recompute | save | save | save | none |"
        in (tmp_path / "activation_memory.md").read_text()
    )


@pytest.mark.slow
def test_rows_for_the_conv_output_without_checkpointing_only(tmp_path) -> None:
    args = ["--models", "mamba2", "--size", "tiny", "--batch", "2", "--seq-len", "64", "--states", "recompute"]
    args += ["--norm-output", "recompute", "--conv-output", "save", "recompute", "--ac", "none", "selective"]
    assert activation_memory.main([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "activation_memory.json").read_text())["rows"]
    keys = [(row["conv_output"], row["ac"]) for row in rows]
    assert keys == [("save", "none"), ("recompute", "none"), ("save", "selective")]
    saved = {key: row["saved_bytes"] for key, row in zip(keys, rows, strict=True)}
    assert saved["recompute", "none"] < saved["save", "none"]  # the Triton conv's outputs
    assert (
        "| mamba2-tiny | recompute | recompute | recompute | save | save | none |"
        in (tmp_path / "activation_memory.md").read_text()
    )


@pytest.mark.slow
def test_rows_for_the_mlp_hidden_for_every_model_without_checkpointing_only(tmp_path) -> None:
    args = ["--models", "transformer", "mamba2", "--size", "tiny", "--batch", "2", "--seq-len", "64"]
    args += ["--states", "recompute", "--norm-output", "recompute", "--mlp-hidden", "save", "recompute"]
    assert activation_memory.main([*args, "--ac", "none", "selective", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "activation_memory.json").read_text())["rows"]
    keys = [(row["model"], row["mlp_hidden"], row["ac"]) for row in rows]
    assert keys == [
        ("transformer-tiny", "save", "none"),
        ("transformer-tiny", "recompute", "none"),
        ("transformer-tiny", "save", "selective"),
        ("mamba2-tiny", "save", "none"),
        ("mamba2-tiny", "recompute", "none"),
        ("mamba2-tiny", "save", "selective"),
    ]
    saved = {key: row["saved_bytes"] for key, row in zip(keys, rows, strict=True)}
    for model in ("transformer-tiny", "mamba2-tiny"):
        assert saved[model, "recompute", "none"] < saved[model, "save", "none"]  # SwiGLU's product


@pytest.mark.slow
def test_rows_for_the_ssd_gate_for_ssd_models_without_checkpointing_only(tmp_path) -> None:
    args = ["--models", "transformer", "mamba2", "--size", "tiny", "--batch", "2", "--seq-len", "64"]
    args += ["--states", "recompute", "--norm-output", "recompute", "--ssd-gate", "save", "recompute"]
    assert activation_memory.main([*args, "--ac", "none", "selective", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "activation_memory.json").read_text())["rows"]
    keys = [(row["model"], row["ssd_gate"], row["ac"]) for row in rows]
    assert keys == [
        ("transformer-tiny", "-", "none"),
        ("transformer-tiny", "-", "selective"),
        ("mamba2-tiny", "save", "none"),
        ("mamba2-tiny", "recompute", "none"),
        ("mamba2-tiny", "save", "selective"),
    ]
    saved = {key: row["saved_bytes"] for key, row in zip(keys, rows, strict=True)}
    assert saved["mamba2-tiny", "recompute", "none"] < saved["mamba2-tiny", "save", "none"]  # z
    assert (
        "| mamba2-tiny | recompute | recompute | save | save | recompute | none |"
        in (tmp_path / "activation_memory.md").read_text()
    )
