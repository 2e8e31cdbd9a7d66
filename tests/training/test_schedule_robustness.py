"""``zoo compare --eval-schedules``: a trained TransMamba model evaluated under other TransPoint
schedules, and the Table-9-style robustness table built from the runs."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from zoo.builder import build
from zoo.cli import compare as compare_cmd
from zoo.cli import main
from zoo.data.tasks import make_task
from zoo.errors import ZooError
from zoo.training import robustness
from zoo.training.trainer import TrainConfig, Trainer

SEQ_LEN = 32


def _transmamba_spec(n_layers: int = 2) -> dict:
    mixer = {
        "name": "transmamba",
        "params": {"d_state": 8, "headdim": 8, "n_groups": 1, "expand": 2},
        "ssm": {"name": "auto", "params": {"chunk_size": 8}},
        "converter": {"name": "auto", "params": {"chunk_size": 8}},
        "attention": {"name": "sdpa"},
    }
    return {
        "name": "tm-test",
        "vocab_size": 259,
        "d_model": 16,
        "layers": {"n_layers": n_layers, "block": {"mixer": mixer, "mlp": {"d_ff": 32}}},
        "schedule": {"name": "v9", "params": {"relative": True}},
    }


def _trained(spec: dict) -> Trainer:
    task = make_task("text", data="builtin", seq_len=SEQ_LEN, seed=0)
    torch.manual_seed(0)
    model = build(spec, device="cpu", compile=False)
    config = TrainConfig(steps=3, batch_size=4, lr=3e-3, compile=False, device="cpu", progress=False)
    trainer = Trainer(model, task, config)
    trainer.fit()
    return trainer


def test_a_model_under_attention_and_ssm_gives_different_losses() -> None:
    trainer = _trained(_transmamba_spec())
    results = robustness.evaluate_under(trainer, ["attention", "ssm", "v9", "trained"])
    assert results["attention"]["transpoints"] == [SEQ_LEN, SEQ_LEN]
    assert results["ssm"]["transpoints"] == [0, 0]
    assert results["v9"]["transpoints"] == [0, 1]  # 128 of 8192, scaled to 32 tokens, never rounds to 0
    assert abs(results["attention"]["eval_loss"] - results["ssm"]["eval_loss"]) > 1e-4
    assert results["v9"]["eval_loss"] == results["trained"]["eval_loss"]  # trained with v9 (relative)
    assert trainer.model.transpoints_override is None  # the sweep leaves the model's default alone
    assert trainer.evaluate()["eval_loss"] == results["trained"]["eval_loss"]
    assert robustness.trained_schedule(trainer.model) == {"name": "v9", "random": False, "transpoints": [0, 1]}


def test_models_without_transpoints_are_not_evaluated(standin) -> None:
    task = make_task("text", data="builtin", seq_len=SEQ_LEN, seed=0)
    model = standin(vocab_size=task.vocab_size)
    trainer = Trainer(model, task, TrainConfig(steps=1, batch_size=2, compile=False, device="cpu", progress=False))
    assert robustness.evaluate_under(trainer, ["attention", "ssm"]) == {}
    assert robustness.trained_schedule(model) is None


def test_bad_schedule_names_are_one_line_with_the_choices(capsys) -> None:
    assert robustness.parse_eval_schedules("v1, v9,attention,v9,ssm") == ["v1", "v9", "attention", "ssm"]
    assert robustness.parse_eval_schedules(None) == []
    with pytest.raises(ZooError, match="unknown schedule 'v10'; choose from trained, attention, ssm") as info:
        robustness.parse_eval_schedules("v1,v10")
    assert "v9" in str(info.value) and "cyclic" not in str(info.value)  # cyclic needs params: not nameable
    with pytest.raises(ZooError, match="no schedule given"):
        robustness.parse_eval_schedules(" , ")
    code = main(["compare", "transmamba-tiny", "--eval-schedules", "attn", "--steps", "1", "--no-compile"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--eval-schedules: unknown schedule 'attn'" in err


def _row(model: str, seed: int, losses: dict[str, float], trained: str | None, random: bool = False) -> dict:
    row = {"model": model, "lr": 1e-3, "seed": seed, "params": 100, "tokens": 640, "eval_loss": losses.get("v9", 2.0)}
    if trained is not None:
        row["trained_schedule"] = {"name": trained, "random": random, "transpoints": [0, 4]}
        row["schedule_eval"] = {name: {"transpoints": [0, 4], "eval_loss": loss} for name, loss in losses.items()}
    return row


def _synthetic_rows() -> list[dict]:
    rows = []
    for seed, (v9, ssm, attention) in enumerate([(2.0, 2.2, 2.4), (2.1, 2.31, 2.52), (1.9, 2.09, 2.28)]):
        # "fixed": attention is 20% worse than v9 in every seed, ssm 10%
        rows.append(_row("fixed", seed, {"v9": v9, "ssm": ssm, "attention": attention}, "v9"))
        # "robust": 1% worse on v9 than "fixed", spread 2% (v9 best, ssm worst)
        robust = {"v9": v9 * 1.01, "ssm": v9 * 1.01 * 1.02, "attention": v9 * 1.01 * 1.005}
        rows.append(_row("robust", seed, robust, "random", True))
        rows.append(_row("transformer", seed, {}, None))
    return rows


def test_the_table_marks_the_spread_and_the_v9_gap() -> None:
    rows = _synthetic_rows()
    summary, _ = compare_cmd.summarise(rows)
    record = robustness.robustness(rows, summary)
    assert record["schedules"] == ["v9", "ssm", "attention"] and record["reference"] == "fixed"
    fixed, robust = record["recipes"]
    assert fixed["loss"]["best"] == "v9" and fixed["loss"]["worst"] == "attention"
    assert fixed["loss"]["spread"]["per_seed"] == pytest.approx([0.2, 0.2, 0.2])
    assert fixed["loss"]["spread"]["ci95"] == pytest.approx(0.0, abs=1e-12)
    assert robust["loss"]["best"] == "v9" and robust["loss"]["worst"] == "ssm"
    assert robust["loss"]["spread"]["mean"] == pytest.approx(0.02)
    assert fixed["v9_vs_reference"]["mean"] == 0.0
    assert robust["v9_vs_reference"]["per_seed"] == pytest.approx([0.01, 0.01, 0.01])
    assert robust["loss"]["per_schedule"]["v9"]["per_seed"] == pytest.approx([2.02, 2.121, 1.919])
    table = robustness.markdown(record)
    assert (
        "| fixed (lr 0.001) | v9 | 2.000 ± 0.25 | 2.200 ± 0.27 | 2.400 ± 0.30 | "
        "v9 2.000 ± 0.25 | attention 2.400 ± 0.30 |" in table
    )
    assert "+20.00% ± 0.00% | +0.00% ± 0.00% |" in table
    assert "| robust (lr 0.001) | random |" in table and "+2.00% ± 0.00% | +1.00% ± 0.00% |" in table
    assert "note: transformer: not a TransMamba model (no TransPoints): no schedule columns" in table


def test_merge_writes_the_robustness_table(tmp_path, capsys) -> None:
    source = tmp_path / "runs.json"
    rows = [{**row, "task": {"task": "text", "seq_len": 32}} for row in _synthetic_rows()]
    source.write_text(json.dumps({"rows": rows}))
    parser = argparse.ArgumentParser(prog="zoo")
    compare_cmd.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "m"
    args = parser.parse_args(["compare", "--merge", str(source), "--out", str(out), "--no-plot"])
    assert args.func(args) == 0
    assert "spread (worst/best - 1)" in (out / "compare.md").read_text()
    saved = json.loads((out / "compare.json").read_text())["robustness"]
    assert [entry["model"] for entry in saved["recipes"]] == ["fixed", "robust"]
    # without schedule evaluations there is no robustness table
    source.write_text(json.dumps({"rows": [r for r in rows if r["model"] == "transformer"]}))
    assert args.func(args) == 0
    assert "robustness" not in json.loads((out / "compare.json").read_text())
    assert "spread" not in (out / "compare.md").read_text()


@pytest.mark.slow
def test_compare_evaluates_transmamba_models_under_the_schedules(tmp_path, capsys) -> None:
    spec = tmp_path / "tm.json"
    spec.write_text(json.dumps(_transmamba_spec()))
    out = tmp_path / "cmp"
    argv = ["compare", f"tm={spec}", "--task", "text", "--seq-len", str(SEQ_LEN), "--steps", "1", "--batch-size", "2"]
    argv += ["--seeds", "1", "--no-compile", "--no-plot", "--no-progress", "--device", "cpu"]
    assert main([*argv, "--eval-schedules", "ssm,attention", "--out", str(out)]) == 0
    (row,) = json.loads((out / "compare.json").read_text())["rows"]
    assert list(row["schedule_eval"]) == ["ssm", "attention"] and row["trained_schedule"]["name"] == "v9"
    assert row["schedule_eval"]["ssm"]["eval_loss"] != row["schedule_eval"]["attention"]["eval_loss"]
    assert "| tm (lr 0.003) | v9 |" in (out / "compare.md").read_text()


def test_a_diverged_seed_does_not_hide_the_reference_or_the_recipe() -> None:
    rows = _synthetic_rows()
    # seed 0 of "fixed" diverged (no evaluation, no record): the V9 reference still stands
    rows[0] = {k: v for k, v in rows[0].items() if k not in ("trained_schedule", "schedule_eval", "eval_loss")}
    rows[0]["diverged"] = "training diverged: loss is nan at step 3"
    rows += [{**_row("lost", seed, {}, None), "diverged": "loss is nan"} for seed in range(3)]
    summary, _ = compare_cmd.summarise(rows)
    record = robustness.robustness(rows, summary)
    assert record["reference"] == "fixed" and record["recipes"][0]["trained"]["name"] == "v9"
    assert "lost: every run diverged (no schedule evaluation): no schedule columns" in record["notes"]
