from __future__ import annotations

import math

import pytest
import torch

from zoo.checkpoint import list_checkpoints
from zoo.data import make_task
from zoo.training import TrainConfig, Trainer, read_jsonl
from zoo.training.optim import lr_at, param_groups

FAST = {"compile": False, "progress": False, "device": "cpu"}


def _mqar(seed: int = 0):
    return make_task("mqar", seq_len=32, vocab_size=64, num_items=4, seed=seed, eval_examples=64)


def _losses(run_dir) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl")]


def test_lr_schedule_warmup_then_cosine() -> None:
    kw = {"base_lr": 1.0, "warmup_steps": 10, "total_steps": 110, "min_lr_ratio": 0.1}
    assert lr_at(0, **kw) == pytest.approx(0.1) and lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1) and lr_at(500, **kw) == pytest.approx(0.1)


def test_weight_decay_groups(standin) -> None:
    model = standin()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}  # tied head appears once
    assert all(p.ndim >= 2 for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"] if p.ndim >= 2} == {"embed.weight"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


@pytest.mark.slow
def test_training_learns_mqar_and_logs_jsonl(tmp_path, standin) -> None:
    torch.manual_seed(0)
    config = TrainConfig(steps=60, batch_size=16, lr=1e-2, warmup_steps=5, eval_every=30, **FAST)
    result = Trainer(standin(), _mqar(), config, out_dir=tmp_path).fit()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])
    assert "eval_accuracy" in rows[29] and "eval_accuracy" in rows[59]
    assert result.final_loss < result.losses[0] - 1.0
    assert 0.0 <= result.eval["eval_accuracy"] <= 1.0
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000060"]


def test_text_eval_reports_perplexity(standin) -> None:
    task = make_task("text", data="builtin:topics", seq_len=32)
    config = TrainConfig(steps=3, batch_size=4, **FAST)
    result = Trainer(standin(vocab_size=task.vocab_size), task, config).fit()
    assert result.eval["eval_ppl"] == pytest.approx(math.exp(result.eval["eval_loss"]))


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_loss_sequence_bitwise(tmp_path, standin) -> None:
    config = TrainConfig(steps=16, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=4, save_every=4, **FAST)
    torch.manual_seed(0)
    Trainer(standin(), _mqar(), config, out_dir=tmp_path / "a").fit()
    torch.manual_seed(0)
    crashed = Trainer(standin(), _mqar(), config, out_dir=tmp_path / "b")
    crashed.fit(stop_at=10)  # "dies" after step 10; the last checkpoint is step 8
    assert [p.name for p in list_checkpoints(tmp_path / "b")][-1] == "step-00000008"
    assert len(_losses(tmp_path / "b")) == 10
    torch.manual_seed(123)  # a different init: resume must overwrite it
    resumed = Trainer(standin(), _mqar(), config, out_dir=tmp_path / "b")
    resumed.fit(resume=True)
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(b) == 16
    assert a == b  # bitwise: JSON floats round-trip exactly


def test_resume_refuses_a_different_task(tmp_path, standin) -> None:
    config = TrainConfig(steps=2, batch_size=2, **FAST)
    Trainer(standin(), _mqar(), config, out_dir=tmp_path).fit()
    with pytest.raises(Exception, match="cannot resume"):
        Trainer(standin(), _mqar(seed=1), config.model_copy(update={"steps": 4}), out_dir=tmp_path).fit(resume=True)


def test_random_schedule_gets_per_step_transpoints(standin) -> None:
    model = standin(random_schedule=True)
    config = TrainConfig(steps=3, batch_size=2, grad_accum=2, **FAST)
    Trainer(model, _mqar(), config).fit()
    steps = [step for _, _, step in model.schedule.calls]
    assert steps[:6] == [0, 0, 1, 1, 2, 2]
    assert model.seen_transpoints[0] == model.schedule.transpoints(2, 32, step=0)
    assert model.seen_transpoints[0] != model.seen_transpoints[2]


def test_shorter_training_steps_keep_the_step_s_tokens_and_the_task_length_s_transpoints(standin) -> None:
    model = standin(random_schedule=True)
    task = make_task("mqar", seq_len=32, vocab_size=64, num_items=4, train_seq_lens=[16, 32], eval_examples=16)
    trainer = Trainer(model, task, TrainConfig(steps=6, batch_size=2, **FAST))
    records = [trainer.train_step(step) for step in range(6)]
    lengths = [task.step_length(step) for step in range(6)]
    assert set(lengths) == {16, 32}
    # every step's P drawn at the task's length (a layer cuts it off at a shorter step's), as a
    # fixed schedule's recorded TransPoints are and inference uses them
    assert [seq_len for _, seq_len, _ in model.schedule.calls] == [32] * 6
    assert {record["tokens"] for record in records} == {64}  # 2 rows of 32 or 4 of 16


def test_fixed_schedule_passes_no_transpoints(standin) -> None:
    model = standin()
    Trainer(model, _mqar(), TrainConfig(steps=1, batch_size=2, **FAST)).fit()
    assert set(map(str, model.seen_transpoints)) == {"None"} and model.schedule.calls == []


@pytest.mark.slow
def test_compiled_training_matches_eager_closely(standin) -> None:
    config = TrainConfig(steps=3, batch_size=4, lr=1e-2, warmup_steps=0, **FAST)
    torch.manual_seed(0)
    eager = Trainer(standin(), _mqar(), config).fit()
    torch.manual_seed(0)
    compiled = Trainer(standin(), _mqar(), config.model_copy(update={"compile": True})).fit()
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_device_without_cuda_is_one_clear_error(standin) -> None:
    from zoo.devices import DeviceError

    with pytest.raises(DeviceError, match=r"device='cuda': CUDA is not available.*use device='cpu'"):
        Trainer(standin(), _mqar(), TrainConfig(device="cuda", compile=False, progress=False))
