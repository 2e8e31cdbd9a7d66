"""The trainer, resume and kill -9 on the zoo's real presets (eager, tiny shapes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import zoo
from zoo.checkpoint import list_checkpoints, open_checkpoint
from zoo.data import make_task
from zoo.training import TrainConfig, Trainer, read_jsonl
from zoo.training.runs import build_for_task, resolve_spec

FAST = {"compile": False, "progress": False, "device": "cpu"}
MQAR = ("--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4", "--batch-size", "4")


def _task():
    return make_task("mqar", seq_len=32, vocab_size=32, num_items=4, eval_examples=16)


def _losses(run_dir) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.slow
def test_resume_is_bitwise_on_transmamba_tiny(tmp_path) -> None:
    config = TrainConfig(steps=6, batch_size=4, lr=3e-3, warmup_steps=2, save_every=2, **FAST)
    torch.manual_seed(0)
    Trainer(build_for_task("transmamba-tiny", _task()), _task(), config, out_dir=tmp_path / "a").fit()
    torch.manual_seed(0)
    Trainer(build_for_task("transmamba-tiny", _task()), _task(), config, out_dir=tmp_path / "b").fit(stop_at=3)
    torch.manual_seed(1)
    Trainer(build_for_task("transmamba-tiny", _task()), _task(), config, out_dir=tmp_path / "b").fit(resume=True)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert len(_losses(tmp_path / "a")) == 6


def test_zoo_load_returns_model_with_spec(tmp_path) -> None:
    config = TrainConfig(steps=1, batch_size=2, **FAST)
    model = build_for_task("mamba2-tiny", _task())
    Trainer(model, _task(), config, out_dir=tmp_path).fit()
    loaded = zoo.load(tmp_path)
    assert loaded.spec == model.spec and loaded.spec.vocab_size == 32
    ids = torch.randint(0, 32, (1, 16))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model.eval()(ids))


def test_random_schedule_draws_per_step_transpoints() -> None:
    spec = resolve_spec("transmamba-tiny")
    spec["schedule"] = {"name": "random", "params": {"n_variants": 4}}
    model = zoo.build({**spec, "vocab_size": 32})
    assert model.schedule.is_random
    seen = []
    original = model.forward

    def forward(input_ids, *, transpoints=None):
        seen.append(transpoints)
        return original(input_ids, transpoints=transpoints)

    model.forward = forward
    Trainer(model, _task(), TrainConfig(steps=4, batch_size=2, **FAST)).fit()
    train_points = seen[:4]
    assert all(tp == model.schedule.transpoints(6, 32, step=i) for i, tp in enumerate(train_points))
    # evaluation runs at the model's default, the recorded training TransPoints: the
    # schedule's deterministic evaluation list at the training length
    assert seen[-1] is None
    assert model.default_transpoints(32) == model.schedule.transpoints(6, 32, step=None)


def _train_cmd(out, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "zoo.cli.train",
        "transmamba-tiny",
        *MQAR,
        "--steps",
        "24",
        "--save-every",
        "3",
        "--keep",
        "2",
        "--no-compile",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_zoo_train_then_resume(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(_train_cmd(tmp_path / "straight"), capture_output=True, text=True, env=env, timeout=240)
    assert straight.returncode == 0, straight.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(read_jsonl(metrics)) >= 10:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    checkpoints = list_checkpoints(killed)
    assert checkpoints and all((p / "MANIFEST.json").exists() for p in checkpoints)
    assert open_checkpoint(checkpoints[-1]).step < 24
    resumed = subprocess.run(_train_cmd(killed, "--resume"), capture_output=True, text=True, env=env, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(straight.stdout.strip().splitlines()[-1])
    again = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert again["final_loss"] == final["final_loss"] and again["eval_loss"] == final["eval_loss"]
    assert _losses(killed) == _losses(tmp_path / "straight")
    assert not any((killed / ".staging").iterdir())


@pytest.mark.parametrize("preset", ["transformer-tiny", "mamba2-tiny", "hybrid-tiny", "transmamba-tiny"])
def test_every_tiny_preset_trains_a_step(preset) -> None:
    task = _task()
    result = Trainer(build_for_task(preset, task), task, TrainConfig(steps=2, batch_size=2, **FAST)).fit()
    assert all(map(lambda v: v == v, result.losses)) and "eval_accuracy" in result.eval


def _lengths_task():
    return make_task("mqar", seq_len=32, vocab_size=32, num_items=4, train_seq_lens=[16, 32], eval_examples=16)


def test_the_compile_bound_leaves_a_graph_per_training_length_and_transpoint_list(monkeypatch) -> None:
    import zoo.training.trainer as trainer_module

    seen = {}

    def capture(target, **options):
        seen.update(options)
        return target

    monkeypatch.setattr(trainer_module, "compiled", capture)
    spec = resolve_spec("transmamba-tiny")
    spec["schedule"] = {"name": "random", "params": {"n_variants": 4}}
    config = TrainConfig(steps=1, batch_size=2, progress=False, device="cpu", compile=True)
    Trainer(zoo.build({**spec, "vocab_size": 32}), _lengths_task(), config)
    assert seen["recompile_limit"] == 4 * 2 + 8 and seen["dynamic"] is False
    Trainer(build_for_task("transmamba-tiny", _lengths_task()), _lengths_task(), config)
    assert seen["recompile_limit"] == 2 + 8  # a fixed schedule: a graph per length


@pytest.mark.slow
def test_compiled_training_at_two_lengths_matches_eager() -> None:
    config = TrainConfig(steps=4, batch_size=2, lr=3e-3, warmup_steps=0, eval_every=0, **FAST)
    spec = resolve_spec("transmamba-tiny")
    spec["layers"] = spec["layers"][:2]  # two TransPoint layers: two graphs compile in reasonable time
    losses = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        model = build_for_task(spec, _lengths_task())
        trainer = Trainer(model, _lengths_task(), config.model_copy(update={"compile": compile_}))
        losses.append([trainer.train_step(step)["loss"] for step in range(4)])
    assert {_lengths_task().step_length(step) for step in range(4)} == {16, 32}
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
