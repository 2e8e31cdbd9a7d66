"""TrainConfig.loss: the chunked loss in the model against cross-entropy of its logits, in the
trainer (one process and two), its evaluation, its flags and the throughput benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from zoo.cli import main, make_parser
from zoo.cli import train as train_cmd
from zoo.data import make_task
from zoo.errors import ZooError
from zoo.training import TrainConfig, Trainer, read_jsonl
from zoo.training.runs import build_for_task

FAST = {"compile": False, "progress": False, "device": "cpu"}
ROOT = Path(__file__).resolve().parents[2]


def _mqar():
    return make_task("mqar", seq_len=32, vocab_size=32, num_items=4, eval_examples=16)


def _fit(task, loss: str, **config):
    torch.manual_seed(0)
    model = build_for_task("transmamba-tiny", task)
    settings = {"steps": 4, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1, "loss": loss, **FAST, **config}
    return Trainer(model, task, TrainConfig(**settings)).fit()


@pytest.mark.slow
def test_chunked_training_reproduces_the_logits_run() -> None:
    logits, chunked = _fit(_mqar(), "logits"), _fit(_mqar(), "chunked")
    assert len(chunked.losses) == 4
    assert chunked.losses == pytest.approx(logits.losses, rel=1e-5)
    assert chunked.eval == pytest.approx(logits.eval, rel=1e-5)


@pytest.mark.slow
def test_text_evaluation_with_the_chunked_loss_matches() -> None:
    task = make_task("text", data="builtin:topics", seq_len=32)
    logits, chunked = _fit(task, "logits", steps=2), _fit(task, "chunked", steps=2)
    assert chunked.losses == pytest.approx(logits.losses, rel=1e-5)
    assert chunked.eval["eval_loss"] == pytest.approx(logits.eval["eval_loss"], rel=1e-5)


def test_recall_evaluation_counts_hits_without_logits_as_the_logits_would() -> None:
    torch.manual_seed(0)
    task = _mqar()
    trainer = Trainer(build_for_task("transmamba-tiny", task), task, TrainConfig(steps=1, batch_size=4, **FAST))
    assert trainer.counts_hits
    chunked = trainer.evaluate()
    trainer.counts_hits = False  # the path of a model whose forward takes no count_hits
    logits = trainer.evaluate()
    assert chunked["eval_accuracy"] == logits["eval_accuracy"]
    assert chunked["eval_loss"] == pytest.approx(logits["eval_loss"], rel=1e-6)
    assert chunked["eval_chance"] == logits["eval_chance"]


def test_a_model_without_targets_is_refused_in_one_line(standin) -> None:
    with pytest.raises(ZooError, match="loss=chunked needs a model whose forward takes targets"):
        Trainer(standin(), _mqar(), TrainConfig(loss="chunked", **FAST))
    with pytest.raises(ValidationError):
        TrainConfig(loss="fused")


def test_the_flag_and_the_config_file_set_it(tmp_path) -> None:
    parser = make_parser()
    assert train_cmd.config_from_args(parser.parse_args(["train", "m-tiny"])).loss == "logits"
    assert train_cmd.config_from_args(parser.parse_args(["train", "m-tiny", "--loss", "chunked"])).loss == "chunked"
    from zoo.training.config_file import load_run_file

    path = tmp_path / "run.toml"
    path.write_text('model = "transmamba-tiny"\n[train]\nloss = "chunked"\n')
    assert load_run_file(path).train == {"loss": "chunked"}


@pytest.mark.slow
def test_the_throughput_benchmark_runs_both_losses_in_one_command(tmp_path, capsys) -> None:
    smoke = ["--device", "cpu", "--size", "tiny", "--tokens-per-step", "64", "--steps", "1", "--warmup", "0"]
    out = tmp_path / "bench"
    command = ["bench", "--suite", "train", *smoke, "--seq-lens", "32", "--no-compile", "--no-plot", "--out", str(out)]
    assert main([*command, "--models", "transformer", "hf-llama", "--loss", "logits", "chunked"]) == 0
    report = json.loads((out / "train_throughput.json").read_text())
    assert report["config"]["losses"] == ["logits", "chunked"]
    by = {(row["model"], row["loss_path"]): row for row in report["rows"]}
    assert by["transformer", "logits"]["tokens_per_s"] > 0 and by["transformer", "chunked"]["tokens_per_s"] > 0
    assert by["transformer", "chunked"]["time_vs_transformer"] == 1.0
    assert "logits only" in by["hf-llama", "chunked"]["skipped"]
    assert "| transformer (chunked loss) | 32 |" in capsys.readouterr().out


@pytest.mark.slow
def test_two_processes_with_the_chunked_loss_match_one_with_logits(tmp_path) -> None:
    """FSDP2 on gloo: each rank's summed chunked loss over the global count, as the logits path."""
    base = [sys.executable, "-m", "zoo", "train", "transmamba-tiny", "--task", "mqar", "--seq-len", "32"]
    base += ["--vocab", "32", "--num-items", "4", "--steps", "3", "--no-compile", "--no-progress", "--warmup", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    runs = {
        "one": ["--batch-size", "6"],
        "two": ["--batch-size", "3", "--nproc", "2", "--loss", "chunked"],
    }
    for name, extra in runs.items():
        result = subprocess.run(
            [*base, *extra, "--out", str(tmp_path / name)], capture_output=True, text=True, env=env, timeout=400
        )
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = ([row["loss"] for row in read_jsonl(tmp_path / name / "metrics.jsonl")] for name in runs)
    assert len(two) == 3 and two == pytest.approx(one, rel=1e-5)
